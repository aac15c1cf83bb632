import Cluster
import Foundation
import Harness
import Locking
import Logging
import Testing

@Suite("Live migration on simulated hosts", .serialized)
struct LiveMigrationTests {
    let logger = Logger(label: "vmha.tests.ha.live")

    /// vm1 (records workload) on A:
    /// 1. `vmha migrate vm1 --to hostB --live` on A: vm1 runs on B (on B's exports), A is SECOND and
    ///    UpToDate again; the guest was not rebooted and kept acknowledging records.
    /// 2. `vmha migrate vm1 --to hostA --live` on A (the target asks B to hand it over): back on A.
    /// 3. A live migration B's libvirt refuses (a different domain named vm1 is defined there):
    ///    one clear line, exit 1, vm1 keeps running on A, B's prepared exports are closed.
    @Test(.enabled(if: hostsAvailable), .timeLimit(.minutes(10)))
    func liveMigrationThereAndBackAndARefusedOne() async throws {
        try await HACluster.test(logger: logger) { ha, watch in
            let (a, b) = (ha.hostA, ha.hostB)
            let serial = ha.serial
            let acks = ACKTimeline(serial)
            defer { acks.stop() }
            try await ha.startAndWaitUntilRedundant()

            try await liveMigrate(ha, source: 0, target: 1, commandOn: 0, acks: acks)
            try await liveMigrate(ha, source: 1, target: 0, commandOn: 0, acks: acks)

            // 3. B's libvirtd cannot take it: another domain named vm1 (other UUID) is defined there.
            let stale = "\(ha.scratch)/vm1-stale.xml"
            try """
                <domain type='qemu'><name>vm1</name><uuid>\(UUID().uuidString.lowercased())</uuid>\
                <memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type></os></domain>
                """.write(toFile: stale, atomically: true, encoding: .utf8)
            try Shell.run(["virsh", "-q", "-c", b.uri, "define", stale])
            let before = try #require(serial.lastACK())
            let failed = try ha.vmhaCommand(0, ["migrate", "vm1", "--to", b.name, "--live"])
            print("REFUSED LIVE MIGRATION: exit \(failed.status): \(failed.output)")
            #expect(failed.status == 1)
            #expect(failed.output.split(separator: "\n").count == 1, "one line: \(failed.output)")
            #expect(failed.output.contains("live migration of vm1 to \(b.name) failed") && failed.output.contains("keeps running on \(a.name)"))
            #expect(ha.vm(0)?.state == "PRIM" && ha.vm(1)?.state == "SECOND")
            #expect(a.qemuPID(domain: "vm1") != nil)
            try await serial.waitForACK(after: before + 5)
            #expect(serial.verifySummaries().count == 1, "the guest was not rebooted")
            try await HACluster.waitUntil("B's prepared export closed", timeout: .seconds(10)) {
                !FileManager.default.fileExists(atPath: "\(ha.scratch)/\(b.name)/nbd/vm1-disk0.sock")
            }
            try Shell.run(["virsh", "-q", "-c", b.uri, "undefine", "vm1"])
            #expect(!serial.lines().contains { $0.hasPrefix("VERIFY-BAD") || $0.hasPrefix("WRITE-ERR") })
        }
    }

    /// The source host dies after libvirt moved the domain and before the source demoted (a
    /// failpoint holds A's vmhad there): B, with the witness's vote, promotes under the running
    /// domain and releases the guest's held writes. The guest is not rebooted and loses no
    /// acknowledged record (a kill -9 of its QEMU on B makes the restarted guest verify them all);
    /// A returns as a SECOND and is resynced from B; vm1 never runs on both hosts.
    @Test(.enabled(if: hostsAvailable), .timeLimit(.minutes(10)))
    func sourceDiesAfterTheDomainMoved() async throws {
        try await HACluster.test(logger: logger) { ha, watch in
            let (a, b) = (ha.hostA, ha.hostB)
            let serial = ha.serial
            try await ha.startAndWaitUntilRedundant(environment: ["VMHAD_FAILPOINTS": "live-migration-moved=30000"])
            let command = Task.detached { try? ha.vmhaCommand(0, ["migrate", "vm1", "--to", b.name, "--live"]) }
            try await ha.daemons[0]!.waitForLog("failpoint live-migration-moved", timeout: .seconds(60))
            #expect(b.qemuPID(domain: "vm1") != nil && a.qemuPID(domain: "vm1") == nil, "libvirt moved the domain")
            let acked = try #require(serial.lastACK())
            ha.daemons[0]?.kill()
            try a.crash()
            let crashedAt = ContinuousClock.now
            await watch.hostCrashed(0)
            let result = await command.value
            #expect(result?.status != 0, "vmha lost its vmhad: \(result?.output ?? "-")")

            try await HACluster.waitUntil("vm1 ALONE on B", timeout: .seconds(30)) { ha.vm(1)?.state == "ALONE" }
            try await serial.waitForACK(after: acked + 3, timeout: .seconds(60))
            print("SOURCE DIED AFTER THE MOVE: guest on B writing again \(crashedAt.duration(to: .now)) after the crash; last ACK before \(acked)")
            #expect(serial.verifySummaries().count == 1, "the guest was not rebooted")
            #expect(!serial.lines().contains { $0.hasPrefix("VERIFY-BAD") || $0.hasPrefix("WRITE-ERR") })
            #expect(ha.status(1)?.events.contains { $0.contains("failover") } == true, "\(ha.status(1)?.events ?? [])")

            // Every acknowledged record is on B's replica: the restarted guest verifies them.
            let before = try #require(serial.lastACK())
            kill(try #require(b.qemuPID(domain: "vm1")), SIGKILL)
            try await serial.waitFor("VERIFY after the crash restart on B", timeout: .seconds(90)) { _ in serial.verifySummaries().count == 2 }
            let verify = serial.verifySummaries()[1]
            #expect(verify.bad == 0 && verify.last >= before, "ok=\(verify.ok) bad=\(verify.bad) last=\(verify.last), last ACK \(before)")

            // A returns: B keeps vm1, A is resynced and becomes its UpToDate secondary.
            try a.startLibvirtdInExistingNamespaces()
            try a.linksUp()
            try ha.startDaemon(0)
            try await HACluster.waitUntil("A SECOND and UpToDate, B PRIM", timeout: .seconds(120)) {
                ha.vm(0)?.state == "SECOND" && ha.vm(0)?.replica == "upToDate" && ha.vm(1)?.state == "PRIM"
            }
            #expect(a.qemuPID(domain: "vm1") == nil)
        }
    }

    /// One live migration of vm1, checked and measured.
    func liveMigrate(_ ha: HACluster, source: Int, target: Int, commandOn: Int, acks: ACKTimeline) async throws {
        let hosts = [ha.hostA, ha.hostB]
        let (from, to) = (hosts[source], hosts[target])
        let before = try #require(ha.serial.lastACK())
        let started = ContinuousClock.now
        let result = try ha.vmhaCommand(commandOn, ["migrate", "vm1", "--to", to.name, "--live"])
        let took = started.duration(to: .now)
        #expect(result.status == 0, "\(result.output)")
        try await HACluster.waitUntil("vm1 PRIM on \(to.name), SECOND on \(from.name)", timeout: .seconds(30)) {
            ha.vm(target)?.state == "PRIM" && ha.vm(source)?.state == "SECOND"
        }
        #expect(to.qemuPID(domain: "vm1") != nil)
        #expect(from.qemuPID(domain: "vm1") == nil)
        let xml = try Shell.run(["virsh", "-q", "-c", to.uri, "dumpxml", "vm1"])
        #expect(xml.contains("\(ha.scratch)/\(to.name)/nbd/vm1-disk0.sock"), "the domain uses \(to.name)'s export")
        try await ha.serial.waitForACK(after: before + 10)
        try await HACluster.waitUntil("\(from.name) UpToDate", timeout: .seconds(60)) {
            ha.vm(source)?.replica == "upToDate" && ha.vm(target)?.peerReplica == "upToDate"
        }
        let gap = acks.longestGap(since: started)
        print("LIVE MIGRATION \(from.name) -> \(to.name): vmha exited 0 after \(took); longest gap between ACKs \(gap); redundant again after \(started.duration(to: .now))")
        #expect(ha.serial.verifySummaries().count == 1, "the guest was not rebooted")
        // How long the source took to demote and the target to promote under the running domain.
        for event in (ha.status(source)?.events ?? []) + (ha.status(target)?.events ?? []) where event.contains("live migration") {
            print("  \(event)")
        }
    }
}

/// When each new `ACK n` appeared on the serial console (polled every 20 ms).
final class ACKTimeline: Sendable {
    private let seen = Locked<[(at: ContinuousClock.Instant, ack: Int)]>([])
    private let task: Task<Void, Never>

    init(_ serial: SerialLog) {
        task = Task.detached { [seen] in
            while !Task.isCancelled {
                if let ack = serial.lastACK(), ack != seen.withLock({ $0.last?.ack }) {
                    seen.withLock { $0.append((ContinuousClock.now, ack)) }
                }
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
    }

    func stop() { task.cancel() }

    /// The longest time without a new ACK since `start` (up to now).
    func longestGap(since start: ContinuousClock.Instant) -> Duration {
        let times = [start] + seen.withLock { $0.filter { $0.at > start }.map(\.at) } + [ContinuousClock.now]
        return zip(times, times.dropFirst()).map { $0.0.duration(to: $0.1) }.max() ?? .zero
    }
}
