import Cluster
import Foundation
import Harness
import Libvirt
import Logging
import Testing

@Suite("25 VMs on two simulated hosts", .serialized)
struct ManyVMFailoverTests {
    let logger = Logger(label: "vmha.tests.ha25")

    /// 25 small VMs, 13 preferring A and 12 preferring B; A dies hard. B's capacity (23 vCPUs)
    /// holds its own 12 and 11 of A's: those start on B in priority order, in waves of at most
    /// `concurrent_starts`; the two lowest-priority ones are reported not started; no VM ever runs
    /// on both hosts.
    @Test(.enabled(if: hostsAvailable), .timeLimit(.minutes(10)))
    func hostFailureRestartsByPriorityWithinCapacity() async throws {
        let testStart = ContinuousClock.now
        let concurrentStarts = 3
        // Distinct priorities in an order unrelated to the names (7 is coprime to 25).
        let vms: [HACluster.VM] = (1...25).map { (i: Int) -> HACluster.VM in
            let priority: Int = (i * 7 % 25) * 10
            let diskBytes: UInt64 = i == 1 ? 64 << 20 : 4 << 20
            return HACluster.VM(
                name: String(format: "vm%02d", i), priority: priority, preferredHost: i <= 13 ? 0 : 1,
                workload: i == 1 ? .records : .idle, diskBytes: diskBytes)
        }
        let onA = vms.filter { $0.preferredHost == 0 }, onB = vms.filter { $0.preferredHost == 1 }
        let byPriority = onA.sorted { ($0.priority, $1.name) > ($1.priority, $0.name) }.map(\.name)
        let expectedStarts = Array(byPriority.prefix(11)), expectedSkipped = Array(byPriority.suffix(2))
        #expect(Set(expectedSkipped) == ["vm04", "vm11"], "priorities 30 and 20, the lowest on A")
        let capacity = Resources(vcpus: onB.count + expectedStarts.count, memoryMiB: 64 << 10)

        try await HACluster.test(logger: logger, make: {
            try HACluster(
                cluster: $0, guest: $1, vmhad: $2, vmha: $3, vms: vms,
                capacity: [capacity, capacity], concurrentStarts: concurrentStarts
            )
        }) { ha, watch in
            try ha.startWitness()
            try ha.startDaemon(0)
            try ha.startDaemon(1)
            try await HACluster.waitUntil("all 25 running on their preferred host, peers UpToDate, guests up", timeout: .seconds(300)) {
                guard let a = ha.status(0), let b = ha.status(1) else { return false }
                return vms.allSatisfy { vm in
                    let (here, there) = vm.preferredHost == 0 ? (a, b) : (b, a)
                    guard let running = here.vms.first(where: { $0.name == vm.name }),
                        let standby = there.vms.first(where: { $0.name == vm.name })
                    else { return false }
                    return running.state == "PRIM" && standby.state == "SECOND" && standby.replica == "upToDate"
                        && ha.serials[vm.name]!.lines().contains { $0.contains("VMHA-READY") }
                }
            }
            let records = ha.serials["vm01"]!
            try await records.waitForACK(after: 5, timeout: .seconds(60))
            print("25 VMS: all running and redundant \(testStart.duration(to: .now)) after the test started")

            // A dies hard: vmhad, libvirtd, QEMUs killed, links down.
            ha.daemons[0]?.kill()
            try ha.hostA.crash()
            let killedAt = ContinuousClock.now
            await watch.hostCrashed(0)
            let acked = try #require(records.lastACK())
            try await HACluster.waitUntil("B to run A's VMs that fit", timeout: .seconds(120)) {
                guard let b = ha.status(1) else { return false }
                return expectedStarts.allSatisfy { name in b.vms.contains { $0.name == name && $0.state == "ALONE" } }
                    && b.events.contains { $0.hasPrefix("failover done") }
            }
            let allStarted = killedAt.duration(to: .now)
            try await HACluster.waitUntil("A's guests up on B", timeout: .seconds(240)) {
                expectedStarts.allSatisfy { name in ha.serials[name]!.lines().filter { $0.contains("VMHA-READY") }.count >= 2 }
            }
            let allReady = killedAt.duration(to: .now)
            try await records.waitFor("vm01's VERIFY on B", timeout: .seconds(60)) { _ in records.verifySummaries().count >= 2 }
            let verify = records.verifySummaries()[1]
            print("25 VMS FAILOVER: kill → all \(expectedStarts.count) started on B \(allStarted); → all booted (VMHA-READY) \(allReady); vm01 VERIFY ok=\(verify.ok) bad=\(verify.bad) last=\(verify.last), last ACK before the kill \(acked)")
            #expect(verify.bad == 0)
            #expect(verify.last >= acked, "every acknowledged record of vm01 survived")

            // B's own report: waves in priority order, none larger than the limit; the two
            // lowest-priority VMs not started, for lack of capacity.
            let report = try #require(ha.status(1))
            print(report.events.joined(separator: "\n"))
            let waves = report.events.compactMap { line -> [String]? in
                guard line.hasPrefix("failover wave "), let colon = line.firstIndex(of: ":") else { return nil }
                return line[line.index(after: colon)...].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            }
            #expect(Array(waves.joined()) == expectedStarts, "waves in priority order: \(waves)")
            #expect(waves.allSatisfy { $0.count <= concurrentStarts }, "no wave above concurrent_starts: \(waves)")
            #expect(waves.count == (expectedStarts.count + concurrentStarts - 1) / concurrentStarts)
            for name in expectedSkipped {
                let vm = try #require(report.vms.first { $0.name == name })
                #expect(vm.state == "WAIT" && vm.notStarted?.contains("needs 1 vCPU") == true, "\(name): \(vm.state) \(vm.notStarted ?? "-")")
                #expect(report.events.contains { $0.hasPrefix("failover: \(name) not started: needs") }, "\(report.events)")
            }
            for vm in onB {
                #expect(report.vms.first { $0.name == vm.name }?.state == "ALONE", "\(vm.name) kept running on B")
            }

            // B's libvirt: exactly its own VMs and the ones that fit run there, and they
            // started wave by wave in priority order.
            let connection = try await LibvirtConnection.open(uri: ha.hostB.uri, logger: logger)
            var active: Set<String> = []
            for domain in try await connection.domains() where (try? await domain.state().isActive) == true { active.insert(domain.name) }
            await connection.close()
            #expect(active == Set(onB.map(\.name) + expectedStarts), "active on B: \(active.sorted())")
            let order = await watch.startOrder(host: 1, since: killedAt)
            #expect(Set(order) == Set(expectedStarts), "libvirt start events on B after the kill: \(order)")
            for (index, wave) in waves.enumerated().dropLast() {
                let lastOfWave = wave.compactMap { order.firstIndex(of: $0) }.max() ?? -1
                let firstOfNext = waves[index + 1].compactMap { order.firstIndex(of: $0) }.min() ?? Int.max
                #expect(lastOfWave < firstOfNext, "wave \(index + 1) started before wave \(index + 2) in B's libvirt: \(order)")
            }
            #expect(vms.allSatisfy { ha.hostA.qemuPID(domain: $0.name) == nil }, "no QEMU left on the dead host A")
            print("25 VMS: test took \(testStart.duration(to: .now))")
        }
    }
}
