import Cluster
import Foundation
import Harness
import Logging
import Testing

/// The `agent` check with a real guest (issue 15): vmhad pings the guest's agent through
/// libvirt (`virDomainQemuAgentCommand`, `guest-ping`); the test guest's agent is a busybox
/// responder (``GuestInit``) the test switches off through the guest's control port.
@Suite("VM checks: the guest agent", .serialized)
struct AgentCheckTests {
    let logger = Logger(label: "vmha.tests.ha.agent-check")

    /// 1. The agent answers: the check is healthy (libvirt, the binding and the responder work).
    /// 2. `agent off` (the guest runs on, its agent is silent): the check fails and vm1 is
    ///    restarted on A, not moved; the guest verifies every acknowledged record.
    /// 3. The new guest's agent answers again: the check is healthy after the restart.
    @Test(.enabled(if: hostsAvailable), .timeLimit(.minutes(10)))
    func aSilentAgentRestartsTheVMWhereItRunsAndTheNewGuestAnswers() async throws {
        let checks = """
            [[vms.checks]]
            kind = "agent"
            interval_ms = 1000
            timeout_ms = 1000
            failures = 2
            [vms.recovery]
            restarts = 3
            """
        try await HACluster.test(logger: logger, make: {
            try HACluster(cluster: $0, guest: $1, vmhad: $2, vmha: $3, vms: [
                HACluster.VM(name: "vm1", workload: .records, diskBytes: 64 << 20, memoryMiB: 192, extraTOML: checks, channels: true)
            ])
        }) { ha, watch in
            let a = ha.hostA.name
            let serial = ha.serial
            let answered = CheckReport(name: "agent", health: "healthy", consecutiveFailures: 0, lastResult: "guest-ping answered")
            try await ha.startAndWaitUntilRedundant()

            // 1. Healthy: the guest's responder answered libvirt's guest-sync and guest-ping.
            try await HACluster.waitUntil("A's agent check healthy in vmha status", timeout: .seconds(60)) { ha.vm(0)?.checks == [answered] }
            #expect(try ha.events(0, since: 0).contains { if case .check("vm1", "agent", "healthy", _) = $0.kind { true } else { false } })
            // The control port answers what it does not know, and no command is taken for another.
            await #expect(throws: HAClusterError.self) { try await ha.sendGuestControl(vm: "vm1", "agent sideways") }
            try await serial.waitForACK(after: 10, timeout: .seconds(60))
            #expect(serial.verifySummaries().count == 1)

            // 2. The agent goes silent: failed, restarted on A.
            let acked = try #require(serial.lastACK())
            try await ha.sendGuestControl(vm: "vm1", "agent off")
            try await HACluster.waitUntil("a restart on A", timeout: .seconds(60)) {
                try ha.events(0, since: 0).contains { if case .recovery(_, "restart", _) = $0.kind { true } else { false } }
            }
            try await serial.waitFor("VERIFY after the restart", timeout: .seconds(90)) { _ in serial.verifySummaries().count == 2 }
            let restarted = serial.verifySummaries()[1]
            // `>`: the guest wrote on while only its agent was silent.
            #expect(restarted.bad == 0 && restarted.last > acked, "\(restarted), last ACK before the agent went silent \(acked)")
            let failed = try ha.events(0, since: 0).compactMap { if case .check(_, "agent", "failed", let detail) = $0.kind { detail } else { nil } }
            #expect(failed.count == 1 && failed.first?.hasPrefix("guest-ping: ") == true, "\(failed)")
            let recoveries = try ha.events(0, since: 0).compactMap { if case .recovery(_, let action, let detail) = $0.kind { (action, detail) } else { nil } }
            #expect(recoveries.map(\.0) == ["restart"], "\(recoveries)")
            #expect(recoveries.first?.1.contains("check agent failed: guest-ping: ") == true, "\(recoveries)")
            #expect(recoveries.first?.1.contains("restart 1 of 3 on \(a)") == true, "\(recoveries)")

            // 3. The new guest boots with its agent on: healthy again, still on A, B its replica.
            try await HACluster.waitUntil("the agent check healthy after the restart", timeout: .seconds(60)) {
                try ha.events(0, since: 0).filter { if case .check(_, "agent", "healthy", _) = $0.kind { true } else { false } }.count == 2
            }
            try await HACluster.waitUntil("A's agent check healthy in vmha status", timeout: .seconds(30)) { ha.vm(0)?.checks == [answered] }
            #expect(ha.vm(0)?.state == "PRIM" && ha.vm(1)?.state == "SECOND", "vm1 left A")
            try await ha.sendGuestControl(vm: "vm1", "agent on")  // the new guest's control port answers too
            #expect(try ha.events(0, since: 0).filter { if case .recovery = $0.kind { true } else { false } }.count == 1)
            _ = watch
        }
    }
}
