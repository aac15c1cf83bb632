import Cluster
import Foundation
import Harness
import Libvirt
import Logging
import SystemCalls
import Uring

/// Failover time of the HA cluster end to end, and its baseline measured on the same simulated
/// host in the same run.
///
/// Failover: `vmha demo`'s cluster (one `records` guest on host A, vmhad on A and B, the witness
/// on C); A is killed hard; the time from the kill until the guest on B printed its `VERIFY` line
/// (booted from the replica and checked every record on it).
///
/// Baseline: what any failover needs at least: the detection timeout (`timeouts.detection_ms`)
/// plus a cold boot of the same guest on host B from a local file holding the same records
/// (A's image copied at the kill), start → the same `VERIFY` line. The difference is vmha's own
/// cost: the witness vote, promoting the volume, defining the domain and serving its disk over NBD.
struct FailoverBenchmark {
    struct Result: Codable {
        var failover_seconds: Double
        var takeover_seconds: Double
        var detection_seconds: Double
        var cold_boot_seconds: Double
        var baseline_seconds: Double
        var records_verified: Int
        var records_lost: Int
    }

    /// Medians over the runs (failover and baseline separately), and every run.
    struct Summary: Codable {
        var failover_seconds: Double
        var baseline_seconds: Double
        var takeover_seconds: Double
        var cold_boot_seconds: Double
        var detection_seconds: Double
        var records_lost: Int
        var runs: [Result]

        init(_ runs: [Result]) {
            func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
            failover_seconds = median(runs.map(\.failover_seconds))
            baseline_seconds = median(runs.map(\.baseline_seconds))
            takeover_seconds = median(runs.map(\.takeover_seconds))
            cold_boot_seconds = median(runs.map(\.cold_boot_seconds))
            detection_seconds = runs[0].detection_seconds
            records_lost = runs.map(\.records_lost).reduce(0, +)
            self.runs = runs
        }
    }

    var vmhad: String
    var vmha: String
    var logger: Logger

    func run() async throws -> Result {
        let guest = try TestGuest.prepare(logger: logger)
        return try await TestCluster.with(.init(hosts: 3), logger: logger) { cluster in
            try await HACluster(cluster: cluster, guest: guest, vmhad: vmhad, vmha: vmha).run { ha in
                try await measure(ha, guest: guest)
            }
        }
    }

    private func measure(_ ha: HACluster, guest: TestGuest) async throws -> Result {
        let serial = ha.serial
        let detection = try ClusterConfiguration.parse(String(contentsOfFile: ha.configPaths[1], encoding: .utf8)).timeouts.detection
        try ha.startWitness()
        try ha.startDaemon(0)
        try ha.startDaemon(1)
        try await HACluster.waitUntil("vm1 on A, B UpToDate", timeout: .seconds(120)) {
            ha.vm(0)?.state == "PRIM" && ha.vm(1)?.state == "SECOND" && ha.vm(1)?.replica == "upToDate"
        }
        try await serial.waitForACK(after: 20, timeout: .seconds(90))

        ha.daemons[0]?.kill()
        try ha.hostA.crash()
        let killedAt = ContinuousClock.now
        let acked = serial.lastACK() ?? 0
        // A is dead: its image holds exactly what the guest wrote before the kill.
        let copy = "\(ha.scratch)/baseline.img"
        try Shell.run(["cp", "--sparse=always", ha.imagePath(host: 0), copy])
        try await HACluster.waitUntil("B runs vm1", timeout: .seconds(60)) { ha.vm(1)?.state == "ALONE" }
        let takeover = killedAt.duration(to: .now).seconds
        try await serial.waitFor("VERIFY on B", timeout: .seconds(90)) { _ in serial.verifySummaries().count >= 2 }
        let failover = killedAt.duration(to: .now).seconds
        let verify = serial.verifySummaries()[1]

        // Baseline on the same host B, with nothing else running there.
        await ha.stopAll()
        let connection = try await LibvirtConnection.open(uri: ha.hostB.uri, logger: logger)
        let coldBoot: (seconds: Double, records: Int)
        do {
            coldBoot = try await bootOnce(connection, guest: guest, image: copy, scratch: ha.scratch)
            await connection.close()
        } catch {
            await connection.close()
            throw error
        }
        // The copy may hold one record more than B's replica: written on A, not yet acknowledged.
        guard abs(coldBoot.records - verify.last) <= 1 else {
            throw HAClusterError("the cold boot verified \(coldBoot.records) records, the failover \(verify.last)")
        }
        let boot = coldBoot.seconds
        return Result(
            failover_seconds: failover, takeover_seconds: takeover, detection_seconds: detection.seconds,
            cold_boot_seconds: boot, baseline_seconds: detection.seconds + boot, records_verified: verify.last,
            records_lost: max(0, acked - verify.last) + verify.bad)
    }

    /// Destroys what runs on the host, then boots the guest from `image`: start → `VERIFY`.
    private func bootOnce(_ connection: LibvirtConnection, guest: TestGuest, image: String, scratch: String) async throws -> (seconds: Double, records: Int) {
        for domain in try await connection.domains() { try? await domain.destroy() }
        let serial = SerialLog(path: "\(scratch)/baseline.serial.log")
        var domain = GuestDomain(name: "baseline", workload: .records, disks: [.file(path: image)], serialLog: serial.path)
        domain.interval = 0.1
        let defined = try await connection.define(xml: domain.xml(guest: guest))
        let start = ContinuousClock.now
        try await defined.start()
        try await serial.waitFor("VERIFY of the cold boot", timeout: .seconds(90)) { _ in !serial.verifySummaries().isEmpty }
        let seconds = start.duration(to: .now).seconds
        try? await defined.destroy()
        return (seconds, serial.verifySummaries()[0].last)
    }
}
