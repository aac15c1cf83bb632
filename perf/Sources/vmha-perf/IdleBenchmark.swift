import Cluster
import Foundation
import Harness
import Logging
import SystemCalls

/// What vmhad costs while N replicated idle VMs run: both hosts' vmhad CPU and memory, and the
/// baselines measured in the same run.
///
/// The cluster is HACluster's: N idle test guests (one replicated 4 MiB disk each), the first half
/// preferring A, the rest B, every replica UpToDate. After a settling pause, CPU time is sampled
/// over `seconds` from /proc/PID/stat for both vmhads and all guest QEMUs; memory (RSS, PSS) from
/// /proc/PID/smaps_rollup at the end. Then, for the memory baseline, N `qemu-nbd` processes serve
/// N images of the same size (a plain, unreplicated NBD server per disk; no client connected).
struct IdleBenchmark {
    struct Result: Codable {
        var vms: Int
        var seconds: Double
        var vmhad_a_cpu_percent: Double
        var vmhad_b_cpu_percent: Double
        var vmhad_cpu_percent: Double
        var guests_cpu_percent: Double
        var vmhad_a_rss_bytes: UInt64
        var vmhad_a_pss_bytes: UInt64
        var vmhad_b_rss_bytes: UInt64
        var vmhad_b_pss_bytes: UInt64
        var qemu_nbd_rss_bytes: UInt64
        var qemu_nbd_pss_bytes: UInt64
    }

    var vmhad: String
    var vmha: String
    var count: Int
    var seconds: Double
    var logger: Logger

    func run() async throws -> Result {
        let guest = try TestGuest.prepare(logger: logger)
        let vms = (1...count).map {
            HACluster.VM(name: String(format: "idle%02d", $0), preferredHost: $0 <= (count + 1) / 2 ? 0 : 1)
        }
        // Room for every VM on either host, so placement never depends on the machine.
        let capacity = Resources(vcpus: count, memoryMiB: count * vms[0].memoryMiB)
        return try await TestCluster.with(.init(hosts: 3), logger: logger) { cluster in
            try await HACluster(
                cluster: cluster, guest: guest, vmhad: vmhad, vmha: vmha, vms: vms, capacity: [capacity, capacity], maxVMs: max(25, count)
            ).run { ha in
                try await measure(ha, cluster: cluster)
            }
        }
    }

    private func measure(_ ha: HACluster, cluster: TestCluster) async throws -> Result {
        try ha.startWitness()
        try ha.startDaemon(0)
        try ha.startDaemon(1)
        // A TCG boot takes seconds of this machine's few cores: the wait grows with the count.
        try await HACluster.waitUntil("all VMs running, replicas UpToDate, guests up", timeout: .seconds(120 + 8 * ha.vms.count)) {
            guard let a = ha.status(0), let b = ha.status(1) else { return false }
            return ha.vms.allSatisfy { vm in
                let (here, there) = vm.preferredHost == 0 ? (a, b) : (b, a)
                return here.vms.contains { $0.name == vm.name && $0.state == "PRIM" }
                    && there.vms.contains { $0.name == vm.name && $0.state == "SECOND" && $0.replica == "upToDate" }
                    && ha.serials[vm.name]!.lines().contains { $0.contains("VMHA-READY") }
            }
        }
        // Let boot-time work (full syncs, guest boots) finish.
        try await Task.sleep(for: .seconds(10))

        let daemons = try [0, 1].map { host in
            guard let daemon = ha.daemons[host] else { throw HAClusterError("vmhad of host \(host) is not running") }
            let usage = ProcessUsage(pid: daemon.process.processIdentifier)
            guard usage.command == "vmhad" else { throw HAClusterError("PID \(usage.pid) is \(usage.command), not vmhad") }
            return usage
        }
        let guests = try ha.vms.map { vm in
            let host = vm.preferredHost == 0 ? ha.hostA : ha.hostB
            guard let pid = host.qemuPID(domain: vm.name) else { throw HAClusterError("no QEMU for \(vm.name) on \(host.name)") }
            return ProcessUsage(pid: pid)
        }
        let before = try (daemons + guests).map { try $0.cpuSeconds() }
        let start = ContinuousClock.now
        try await Task.sleep(for: .seconds(seconds))
        let after = try (daemons + guests).map { try $0.cpuSeconds() }
        let elapsed = start.duration(to: .now).seconds
        let percent = zip(after, before).map { ($0 - $1) / elapsed * 100 }
        let memoryA = try daemons[0].memory(), memoryB = try daemons[1].memory()

        // The baseline: one plain qemu-nbd per disk, serving images of the same size.
        let directory = "\(ha.scratch)/qemu-nbd"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var servers: [QemuNBD] = []
        for vm in ha.vms {
            try QemuNBD.createImage(at: "\(directory)/\(vm.name).img", bytes: vm.diskBytes)
            servers.append(try cluster.startNBD(image: "\(directory)/\(vm.name).img", socket: "\(directory)/\(vm.name).sock"))
        }
        try await Task.sleep(for: .seconds(2))
        var nbdRSS: UInt64 = 0, nbdPSS: UInt64 = 0
        for server in servers {
            guard let pid = server.pid else { throw HAClusterError("qemu-nbd for \(server.image) is not running") }
            let memory = try ProcessUsage(pid: pid).memory()
            nbdRSS += memory.rss
            nbdPSS += memory.pss
        }
        for server in servers { server.stop() }

        return Result(
            vms: count, seconds: elapsed, vmhad_a_cpu_percent: percent[0], vmhad_b_cpu_percent: percent[1],
            vmhad_cpu_percent: percent[0] + percent[1], guests_cpu_percent: percent.dropFirst(2).reduce(0, +),
            vmhad_a_rss_bytes: memoryA.rss, vmhad_a_pss_bytes: memoryA.pss, vmhad_b_rss_bytes: memoryB.rss,
            vmhad_b_pss_bytes: memoryB.pss, qemu_nbd_rss_bytes: nbdRSS, qemu_nbd_pss_bytes: nbdPSS)
    }
}
