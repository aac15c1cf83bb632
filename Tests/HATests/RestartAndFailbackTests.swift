import Cluster
import Foundation
import Harness
import Logging
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("vmhad restarts, crashed domains, automatic failback", .serialized)
struct RestartAndFailbackTests {
    let logger = Logger(label: "vmha.tests.ha.restart")

    /// One cluster, vm1 preferring A with `failback = "automatic"`, B's capacity set only in B's own
    /// configuration:
    /// 1. `vmha place` on A plans with B's capacity as B's heartbeats report it; `--on` pins.
    /// 2. vmhad on A is restarted (SIGTERM, then SIGKILL) under the running guest: the guest pauses,
    ///    resumes, is never rebooted, and B never takes over.
    /// 3. A's QEMU of vm1 is killed: vmhad restarts the domain, the guest finds every acknowledged record.
    /// 4. Host A dies: B runs vm1; A comes back: after the resync vm1 returns to A without a command.
    /// Throughout, vm1 never runs on both hosts at once.
    @Test(.enabled(if: hostsAvailable), .timeLimit(.minutes(10)))
    func restartsCrashRestartAndAutomaticFailback() async throws {
        try await HACluster.test(logger: logger, make: {
            try HACluster(
                cluster: $0, guest: $1, vmhad: $2, vmha: $3, failback: "automatic",
                ownCapacity: [1: (vcpus: 7, memoryMiB: 3333)],
                // A killed vmhad gets no restart grace: its restart must beat detection even on a
                // loaded 2-vCPU CI machine.
                detectionMs: 6000
            )
        }) { ha, watch in
            let (a, b) = (ha.hostA, ha.hostB)
            let serial = ha.serial
            // Start-up: A (preferred) runs it, B full-syncs and becomes UpToDate.
            try await ha.startAndWaitUntilRedundant()

            // 1. Placement with the peer's own capacity.
            let place = try ha.vmhaCommand(0, ["place", "--dry-run", "--json"])
            #expect(place.status == 0, "\(place.output)")
            let report = try JSONDecoder().decode(PlaceReport.self, from: Data(place.output.utf8))
            #expect(report.hosts.first { $0.name == b.name } == .init(name: b.name, vcpus: 7, memoryMiB: 3333, source: "peer heartbeat"))
            #expect(report.hosts.first { $0.name == a.name }?.source == "libvirt")
            let pinned = try ha.vmhaCommand(0, ["place", "vm1", "--on", b.name, "--dry-run", "--json"])
            let pinnedReport = try JSONDecoder().decode(PlaceReport.self, from: Data(pinned.output.utf8))
            #expect(pinnedReport.moves == ["vm1: \(a.name) -> \(b.name)"] && pinnedReport.applied.isEmpty)
            let unknown = try ha.vmhaCommand(0, ["place", "vm9", "--dry-run"])
            #expect(unknown.status != 0 && unknown.output.contains("no such VM: vm9"), "\(unknown.output)")

            // 2. vmhad restarted under the running guest, cleanly and by a crash.
            for signal in [SIGTERM, SIGKILL] {
                let before = try #require(serial.lastACK())
                let restartedAt = ContinuousClock.now
                if signal == SIGTERM { await ha.daemons[0]?.stop() } else { ha.daemons[0]?.kill() }
                try ha.startDaemon(0)
                try await HACluster.waitUntil("vm1 PRIM on A after the restart", timeout: .seconds(30)) { ha.vm(0)?.state == "PRIM" }
                try await serial.waitForLine(containing: "ACK \(before + 5)", timeout: .seconds(60))
                print("VMHAD RESTART (signal \(signal)): guest writing again \(restartedAt.duration(to: .now)) after; last ACK before \(before)")
                #expect(serial.verifySummaries().count == 1, "the guest was not rebooted")
                #expect(ha.vm(1)?.state == "SECOND", "B did not take over")
                #expect(ha.status(1)?.events.contains { $0.contains("failover") } == false)
            }

            // 3. QEMU dies under the guest: vmhad restarts the domain.
            let acked = try #require(serial.lastACK())
            let pid = try #require(a.qemuPID(domain: "vm1"))
            let killedAt = ContinuousClock.now
            kill(pid, SIGKILL)
            try await serial.waitFor("VERIFY after the crash restart", timeout: .seconds(90)) { _ in serial.verifySummaries().count == 2 }
            let afterCrash = serial.verifySummaries()[1]
            print("CRASH RESTART: guest verified \(killedAt.duration(to: .now)) after kill -9 of QEMU; ok=\(afterCrash.ok) bad=\(afterCrash.bad) last=\(afterCrash.last), last ACK before \(acked)")
            #expect(afterCrash.bad == 0 && afterCrash.last >= acked)
            #expect(ha.status(0)?.events.contains { $0.contains("QEMU process died; restarting") } == true)
            #expect(ha.vm(0)?.state == "PRIM" && ha.vm(1)?.state == "SECOND")

            // 4. Host A dies, B takes over; A returns and vm1 fails back by itself.
            ha.daemons[0]?.kill()
            try a.crash()
            await watch.hostCrashed(0)
            try await HACluster.waitUntil("vm1 ALONE on B", timeout: .seconds(30)) { ha.vm(1)?.state == "ALONE" }
            try await serial.waitFor("VERIFY after failover", timeout: .seconds(60)) { _ in serial.verifySummaries().count == 3 }
            #expect(serial.verifySummaries()[2].bad == 0)
            try a.startLibvirtdInExistingNamespaces()
            try a.linksUp()
            let backAt = ContinuousClock.now
            try ha.startDaemon(0)
            try await HACluster.waitUntil("vm1 back on A by itself", timeout: .seconds(150)) {
                ha.vm(0)?.state == "PRIM" && ha.vm(1)?.state == "SECOND"
            }
            try await serial.waitFor("VERIFY after failback", timeout: .seconds(60)) { _ in serial.verifySummaries().count == 4 }
            print("FAILBACK: vm1 verified on A \(backAt.duration(to: .now)) after A's vmhad came back")
            #expect(serial.verifySummaries()[3].bad == 0)
            #expect(ha.status(1)?.events.contains { $0.contains("failback: vm1 returns to \(a.name)") } == true)
        }
    }
}
