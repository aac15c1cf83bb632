import Cluster
import Foundation
import Harness
import Logging
import Testing

/// VM checks with a real guest (issue 15): a script check that the test fails and heals per host
/// through a flag file (`$VMHA_HOST.down`), vm1 preferring A with `failback = "automatic"`.
@Suite("VM checks: restart, then move, then hold", .serialized)
struct CheckTests {
    let logger = Logger(label: "vmha.tests.ha.checks")

    /// 1. A's check fails: vm1 is restarted on A (once, `restarts = 1`), the guest verifies every
    ///    acknowledged record; it still fails: vm1 moves to B (a switchover) and verifies there.
    /// 2. A heals: vm1 stays on B (a checker's move is not failed back, and it is held).
    /// 3. B's check fails too: restarted on B once, then left on B with the hold-down's reason —
    ///    never moved back to A within the hold-down.
    /// Every step is an event (`vmha events`), and `vmha status` shows the check.
    @Test(.enabled(if: hostsAvailable), .timeLimit(.minutes(10)))
    func aFailedCheckRestartsThenMovesTheVMWhichThenStays() async throws {
        let flags = NSTemporaryDirectory() + "vmha-check-flags-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: flags, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: flags) }
        let checks = """
            [[vms.checks]]
            kind = "script"
            name = "flag"
            command = "test ! -e \(flags)/$VMHA_HOST.down"
            interval_ms = 500
            timeout_ms = 400
            failures = 2
            startup_grace_ms = 4000
            [vms.recovery]
            restarts = 1
            hold_down_ms = 600000
            """
        try await HACluster.test(logger: logger, make: {
            try HACluster(cluster: $0, guest: $1, vmhad: $2, vmha: $3, vms: [
                HACluster.VM(name: "vm1", workload: .records, diskBytes: 64 << 20, memoryMiB: 192, failback: "automatic", extraTOML: checks)
            ])
        }) { ha, watch in
            let (a, b) = (ha.hostA.name, ha.hostB.name)
            let serial = ha.serial
            try await ha.startAndWaitUntilRedundant()
            try await HACluster.waitUntil("A's check healthy in vmha status", timeout: .seconds(30)) {
                ha.vm(0)?.checks == [CheckReport(name: "flag", health: "healthy", consecutiveFailures: 0, lastResult: "script exit 0")]
            }
            let text = try ha.vmhaCommand(0, ["status"]).output
            #expect(text.contains("check flag: healthy (script exit 0)"), "\(text)")
            try await serial.waitForACK(after: 10, timeout: .seconds(60))

            // 1. A's check fails: one restart on A, then the move to B. (The restarted guest may
            // be shut down for the move before it printed its VERIFY: its boot is counted, not
            // its summary.)
            let acked = try #require(serial.lastACK())
            FileManager.default.createFile(atPath: "\(flags)/\(a).down", contents: nil)
            try await HACluster.waitUntil("vm1 running on B", timeout: .seconds(180)) { ha.vm(1)?.state == "PRIM" }
            let movedAcked = try #require(serial.lastACK())
            try await serial.waitFor("the third boot (on B) verified", timeout: .seconds(90)) { _ in
                serial.bootCount() == 3 && serial.latestBootVerify() != nil
            }
            let onB = try #require(serial.latestBootVerify())
            #expect(onB.bad == 0 && onB.last >= movedAcked, "\(onB), last ACK before the move \(movedAcked), before the check failed \(acked)")
            #expect(serial.verifySummaries().allSatisfy { $0.bad == 0 }, "\(serial.verifySummaries())")
            let eventsA = try ha.events(0, since: 0).map(\.kind)
            let recoveriesA = eventsA.compactMap { if case .recovery(_, let action, let detail) = $0 { (action, detail) } else { nil } }
            #expect(recoveriesA.map(\.0) == ["restart", "move"], "\(recoveriesA)")
            #expect(recoveriesA.first?.1.contains("check flag failed: script exit 1; restart 1 of 1 on \(a)") == true, "\(recoveriesA)")
            #expect(eventsA.contains { if case .check(_, "flag", "failed", _) = $0 { true } else { false } })

            // 2. A heals; B resyncs A; vm1 stays on B (not failed back, held).
            try FileManager.default.removeItem(atPath: "\(flags)/\(a).down")
            try await HACluster.waitUntil("A's replica UpToDate", timeout: .seconds(120)) { ha.vm(0)?.state == "SECOND" && ha.vm(0)?.replica == "upToDate" }
            try await HACluster.waitUntil("B's check healthy", timeout: .seconds(30)) { ha.vm(1)?.checks?.first?.health == "healthy" }
            try await Task.sleep(for: .seconds(8))
            #expect(ha.vm(1)?.state == "PRIM" && ha.vm(0)?.state == "SECOND", "vm1 moved back")

            // 3. B's check fails too: one restart on B, then it stays there with the reason.
            let beforeB = serial.verifySummaries().count
            FileManager.default.createFile(atPath: "\(flags)/\(b).down", contents: nil)
            try await serial.waitFor("VERIFY after the restart on B", timeout: .seconds(90)) { _ in serial.verifySummaries().count == beforeB + 1 }
            try await HACluster.waitUntil("B gives up, held", timeout: .seconds(60)) {
                try ha.events(1, since: 0).contains { if case .recovery(_, "gaveUp", let detail) = $0.kind { detail.contains("held") } else { false } }
            }
            #expect(ha.vm(1)?.state == "PRIM" && ha.vm(0)?.state == "SECOND", "vm1 left B within the hold-down")
            #expect(ha.vm(1)?.lastError?.contains("moved by a checker") == true, "\(String(describing: ha.vm(1)?.lastError))")
            _ = watch
        }
    }
}
