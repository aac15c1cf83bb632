import Cluster
import Foundation
import Harness
import Logging
import Testing

/// Host checks with a real guest (issue 15): each simulated host has a "VM network" interface
/// `vmnet0` (a veth pair inside its namespace) watched by an `interface` host check; vm1 prefers
/// A, `failback = "automatic"`, hold-down 40 s.
@Suite("Host checks: evacuate, hold, fail back", .serialized)
struct HostCheckTests {
    let logger = Logger(label: "vmha.tests.ha.hostchecks")
    static let holdDown = Duration.seconds(40)

    /// 1. A's vmnet0 goes down: vm1 moves to B (a switchover), every acknowledged record verified
    ///    there; A says why (`hostCheck` failed, `recovery evacuate`), B sees A's failed check.
    /// 2. A's vmnet0 comes back at once: vm1 stays on B while its hold-down lasts — then, and only
    ///    by its failback policy, it returns to A, verified again.
    @Test(.enabled(if: hostsAvailable), .timeLimit(.minutes(10)))
    func aHostThatLosesItsVMNetworkHandsItsVMsOverAndGetsThemBackAfterTheHoldDown() async throws {
        let hostCheck = """
            [[hosts.checks]]
            kind = "interface"
            interface = "vmnet0"
            interval_ms = 500
            timeout_ms = 400
            failures = 2
            """
        let recovery = "[vms.recovery]\nhold_down_ms = \(Self.holdDown.components.seconds * 1000)\n"
        try await HACluster.test(logger: logger, make: { cluster, guest, vmhad, vmha in
            for host in cluster.hosts.prefix(2) {
                try Shell.run(["ip", "-n", host.netns, "link", "add", "vmnet0", "type", "veth", "peer", "name", "vmnet0p"])
                try Shell.run(["ip", "-n", host.netns, "link", "set", "vmnet0", "up"])
                try Shell.run(["ip", "-n", host.netns, "link", "set", "vmnet0p", "up"])
            }
            return try HACluster(cluster: cluster, guest: guest, vmhad: vmhad, vmha: vmha, vms: [
                HACluster.VM(name: "vm1", workload: .records, diskBytes: 64 << 20, memoryMiB: 192, failback: "automatic", extraTOML: recovery)
            ], hostTOML: [0: hostCheck, 1: hostCheck])
        }) { ha, watch in
            let (a, b) = (ha.hostA.name, ha.hostB.name)
            let serial = ha.serial
            try await ha.startAndWaitUntilRedundant()
            let healthy = CheckReport(name: "interface vmnet0", health: "healthy", consecutiveFailures: 0, lastResult: "vmnet0 up, carrier")
            try await HACluster.waitUntil("both hosts' vmnet0 healthy", timeout: .seconds(30)) {
                ha.status(0)?.hostChecks == [healthy] && ha.status(1)?.hostChecks == [healthy]
            }
            let text = try ha.vmhaCommand(0, ["status"]).output
            #expect(text.contains("host check interface vmnet0: healthy (vmnet0 up, carrier)"), "\(text)")
            try await serial.waitForACK(after: 10, timeout: .seconds(60))

            // 1. A loses its VM network: vm1 runs on B.
            let acked = try #require(serial.lastACK())
            let since = try #require(ha.status(0)?.eventSequence)
            try await Shell.run(async: ["ip", "-n", ha.hostA.netns, "link", "set", "vmnet0", "down"])
            try await HACluster.waitUntil("vm1 running on B", timeout: .seconds(120)) { ha.vm(1)?.state == "PRIM" }
            let moved = ContinuousClock.now
            try await serial.waitFor("VERIFY on B", timeout: .seconds(90)) { _ in serial.verifySummaries().count == 2 }
            let onB = serial.verifySummaries()[1]
            #expect(onB.bad == 0 && onB.last >= acked, "\(onB), last ACK before the move \(acked)")
            let eventsA = try ha.events(0, since: since).map(\.kind)
            #expect(eventsA.contains { if case .hostCheck(a, "interface vmnet0", "failed", "vmnet0 is down") = $0 { true } else { false } }, "\(eventsA)")
            let evacuations = eventsA.compactMap { if case .recovery("vm1", "evacuate", let detail) = $0 { detail } else { nil } }
            #expect(evacuations == ["host check interface vmnet0 failed on \(a); moving it to \(b)"], "\(eventsA)")
            try await HACluster.waitUntil("B sees A's failed check", timeout: .seconds(10)) { ha.status(1)?.peerFailingHostChecks == ["interface vmnet0"] }

            // 2. A's network is back at once; vm1 stays on B for its hold-down, then fails back.
            try await Shell.run(async: ["ip", "-n", ha.hostA.netns, "link", "set", "vmnet0", "up"])
            try await HACluster.waitUntil("A's check healthy again, and B knows", timeout: .seconds(30)) {
                ha.status(0)?.hostChecks == [CheckReport(name: "interface vmnet0", health: "healthy", consecutiveFailures: 0, lastResult: "vmnet0 up, carrier")]
                    && ha.status(1)?.peerFailingHostChecks == nil
            }
            try await HACluster.waitUntil("A's replica UpToDate", timeout: .seconds(60)) { ha.vm(0)?.state == "SECOND" && ha.vm(0)?.replica == "upToDate" }
            // Well inside the hold-down: still on B.
            let inside = moved + Self.holdDown - .seconds(10)
            if ContinuousClock.now < inside { try await Task.sleep(until: inside) }
            #expect(ha.vm(1)?.state == "PRIM" && ha.vm(0)?.state == "SECOND", "vm1 moved back within its hold-down")
            let acked2 = try #require(serial.lastACK())
            try await HACluster.waitUntil("vm1 failed back to A after the hold-down", timeout: .seconds(90)) { ha.vm(0)?.state == "PRIM" }
            #expect(ContinuousClock.now - moved >= Self.holdDown - .seconds(1), "failed back after \(ContinuousClock.now - moved)")
            try await serial.waitFor("VERIFY on A", timeout: .seconds(90)) { _ in serial.verifySummaries().count == 3 }
            let back = serial.verifySummaries()[2]
            #expect(back.bad == 0 && back.last >= acked2, "\(back), last ACK before the failback \(acked2)")
            let eventsB = try ha.events(1, since: 0).map(\.kind)
            #expect(eventsB.contains { if case .note(let line) = $0 { line.contains("failback: vm1 returns to \(a)") } else { false } }, "\(eventsB)")
            _ = watch
        }
    }
}
