import Cluster
import Foundation
import Harness
import Logging
import Testing

/// The `tcp` check with a real guest over a real network path (issue 15): each simulated host has
/// a bridge `vmbr0` at 192.168.77.1/24 (``GuestNetwork``); vm1's guest sits on it at
/// 192.168.77.10 and serves TCP port 80 (busybox httpd) from boot on. The test stops and starts
/// the service through the guest's control port (`service off|on`); the guest keeps writing
/// records meanwhile.
@Suite("VM checks: a TCP service in the guest", .serialized)
struct ServiceCheckTests {
    let logger = Logger(label: "vmha.tests.ha.service-check")
    static let check = "tcp 192.168.77.10:80"
    static let connected = CheckReport(name: check, health: "healthy", consecutiveFailures: 0, lastResult: "connected to 192.168.77.10:80")

    /// vm1 (records, preferring A) on the guest network with one tcp check on its service. A long
    /// start-up grace costs nothing: a passing result ends it (a booting guest's service is up
    /// within seconds, but boots under TCG on 2 busy cores vary).
    static func vm(recovery: String, flap: String = "") -> HACluster.VM {
        let checks = """
            [[vms.checks]]
            kind = "tcp"
            address = "192.168.77.10:80"
            interval_ms = 500
            timeout_ms = 400
            failures = 2
            startup_grace_ms = 90000
            \(flap)
            [vms.recovery]
            \(recovery)
            """
        return HACluster.VM(name: "vm1", workload: .records, diskBytes: 64 << 20, memoryMiB: 192, extraTOML: checks, channels: true, address: "192.168.77.10/24")
    }

    static func recoveries(_ ha: HACluster, _ host: Int) throws -> [(action: String, detail: String)] {
        try ha.events(host, since: 0).compactMap { if case .recovery("vm1", let action, let detail) = $0.kind { (action, detail) } else { nil } }
    }

    static func checkEvents(_ ha: HACluster, _ host: Int) throws -> [(health: String, detail: String)] {
        try ha.events(host, since: 0).compactMap { if case .check("vm1", Self.check, let health, let detail) = $0.kind { (health, detail) } else { nil } }
    }

    /// 1. The check is healthy: vmhad on A reaches the guest's service over A's vmbr0.
    /// 2. `service off` (the guest runs and writes on): vm1 is restarted on A (`restarts = 1`);
    ///    the new guest boots with its service on, the check is healthy again, every
    ///    acknowledged record verified.
    /// 3. `service off` again, past the limit: vm1 moves to B, where B's own vmbr0 reaches it
    ///    (healthy there), every acknowledged record verified.
    @Test(.enabled(if: hostsAvailable), .timeLimit(.minutes(10)))
    func aDeadServiceIsRestartedThenMovedAndServesOnThePeer() async throws {
        try await HACluster.test(logger: logger, make: {
            try HACluster(cluster: $0, guest: $1, vmhad: $2, vmha: $3, vms: [Self.vm(recovery: "restarts = 1")])
        }) { ha, watch in
            let (a, b) = (ha.hostA.name, ha.hostB.name)
            let serial = ha.serial
            try await ha.startAndWaitUntilRedundant()

            // 1. Healthy over the network.
            try await HACluster.waitUntil("A's tcp check healthy", timeout: .seconds(90)) { ha.vm(0)?.checks == [Self.connected] }
            try await serial.waitForACK(after: 10, timeout: .seconds(60))
            #expect(serial.bootCount() == 1)

            // 2. The service stops: restarted on A; the new guest serves again.
            let acked = try #require(serial.lastACK())
            try await ha.sendGuestControl(vm: "vm1", "service off")
            try await HACluster.waitUntil("a restart on A", timeout: .seconds(60)) { try Self.recoveries(ha, 0).count == 1 }
            let restarted = try await serial.waitForVerify(ofBoot: 2)
            #expect(restarted.bad == 0 && restarted.last >= acked, "\(restarted), last ACK before the service stopped \(acked)")
            try await HACluster.waitUntil("the check healthy again on A", timeout: .seconds(90)) {
                try Self.checkEvents(ha, 0).filter { $0.health == "healthy" }.count == 2 && ha.vm(0)?.checks == [Self.connected]
            }
            let first = try Self.recoveries(ha, 0)
            #expect(first.map(\.action) == ["restart"], "\(first)")
            #expect(first.first?.detail.hasPrefix("check \(Self.check) failed: connect to 192.168.77.10:80: ") == true, "\(first)")
            #expect(first.first?.detail.hasSuffix("restart 1 of 1 on \(a)") == true, "\(first)")
            #expect(ha.vm(0)?.state == "PRIM" && ha.vm(1)?.state == "SECOND", "vm1 left A")

            // 3. It stops again, its restarts spent: moved to B, and B reaches the new guest.
            try await HACluster.waitUntil("B's replica UpToDate", timeout: .seconds(60)) { ha.vm(1)?.replica == "upToDate" }
            try await ha.sendGuestControl(vm: "vm1", "service off")
            try await HACluster.waitUntil("vm1 running on B", timeout: .seconds(120)) { ha.vm(1)?.state == "PRIM" }
            let movedAcked = try #require(serial.lastACK())
            // The guest on A may be shut down for the move before the restart's VERIFY: boots count.
            let onB = try await serial.waitForVerify(ofBoot: 3)
            #expect(onB.bad == 0 && onB.last >= movedAcked, "\(onB), last ACK before the move \(movedAcked)")
            #expect(serial.verifySummaries().allSatisfy { $0.bad == 0 }, "\(serial.verifySummaries())")
            try await HACluster.waitUntil("B's tcp check healthy", timeout: .seconds(90)) { ha.vm(1)?.checks == [Self.connected] }
            let all = try Self.recoveries(ha, 0)
            #expect(all.map(\.action) == ["restart", "move"], "\(all)")
            #expect(all.last?.detail.hasSuffix("restarted 1 times, moving it to \(b)") == true, "\(all)")
            #expect(try Self.checkEvents(ha, 1).map(\.health) == ["healthy"])
            #expect(ha.vm(0)?.state == "SECOND", "\(String(describing: ha.vm(0)))")
            _ = watch
        }
    }

    /// A service that dies after every restart flaps. With `restarts = 2` and flapping at 3
    /// changes (within 300 s), CheckMachine predicts: the first failure restarts vm1 (change 1),
    /// the second too (change 2; `starting` → healthy after a restart is no change), and the
    /// third — which RecoveryPolicy would answer with a move — makes the check flapping: reported,
    /// not acted on. vm1 stays on A, not restarted again, while the test keeps toggling the service
    /// (each change in the window keeps it flapping, unreported).
    @Test(.enabled(if: hostsAvailable), .timeLimit(.minutes(10)))
    func aServiceThatKeepsDyingFlapsAndIsNotMoved() async throws {
        try await HACluster.test(logger: logger, make: {
            try HACluster(cluster: $0, guest: $1, vmhad: $2, vmha: $3, vms: [
                Self.vm(recovery: "restarts = 2", flap: "flap_changes = 3\nflap_window_ms = 300000")
            ])
        }) { ha, watch in
            let a = ha.hostA.name
            let serial = ha.serial
            try await ha.startAndWaitUntilRedundant()
            try await HACluster.waitUntil("A's tcp check healthy", timeout: .seconds(90)) { ha.vm(0)?.checks == [Self.connected] }
            let started = ContinuousClock.now

            // Two failures, two restarts; each new guest serves again.
            for restart in 1...2 {
                let acked = try #require(serial.lastACK())
                try await ha.sendGuestControl(vm: "vm1", "service off")
                try await HACluster.waitUntil("restart \(restart) on A", timeout: .seconds(60)) { try Self.recoveries(ha, 0).count == restart }
                let verified = try await serial.waitForVerify(ofBoot: restart + 1)
                #expect(verified.bad == 0 && verified.last >= acked, "\(verified), last ACK before the service stopped \(acked)")
                try await HACluster.waitUntil("healthy after restart \(restart)", timeout: .seconds(90)) {
                    try Self.checkEvents(ha, 0).filter { $0.health == "healthy" }.count == restart + 1 && ha.vm(0)?.checks == [Self.connected]
                }
            }

            // The third failure: flapping, not acted on.
            try await ha.sendGuestControl(vm: "vm1", "service off")
            try await HACluster.waitUntil("the check flapping", timeout: .seconds(60)) { try Self.checkEvents(ha, 0).last?.health == "flapping" }
            #expect(ContinuousClock.now - started < .seconds(300), "the three changes took longer than the flap window")
            let flapping = try Self.checkEvents(ha, 0)
            #expect(flapping.last?.detail.hasPrefix("3 changes within 300.0 seconds; not acted on: connect to 192.168.77.10:80: ") == true, "\(flapping)")
            // Failing on, unheeded: four more failed probes (2 s).
            try await HACluster.waitUntil("more failures while flapping", timeout: .seconds(30)) {
                ha.vm(0)?.checks?.first.map { $0.health == "flapping" && $0.consecutiveFailures >= 6 } == true
            }
            // The service back, then down again: changes within the window, still flapping.
            try await ha.sendGuestControl(vm: "vm1", "service on")
            try await HACluster.waitUntil("passing while flapping", timeout: .seconds(30)) {
                ha.vm(0)?.checks == [CheckReport(name: Self.check, health: "flapping", consecutiveFailures: 0, lastResult: Self.connected.lastResult)]
            }
            try await ha.sendGuestControl(vm: "vm1", "service off")
            try await HACluster.waitUntil("failing again while flapping", timeout: .seconds(30)) {
                ha.vm(0)?.checks?.first.map { $0.health == "flapping" && $0.consecutiveFailures >= 4 } == true
            }

            let health = try Self.checkEvents(ha, 0).map(\.health)
            #expect(health == ["healthy", "failing", "failed", "healthy", "failing", "failed", "healthy", "failing", "flapping"], "\(health)")
            let recoveries = try Self.recoveries(ha, 0)
            #expect(recoveries.map(\.action) == ["restart", "restart"], "\(recoveries)")
            #expect(recoveries.last?.detail.hasSuffix("restart 2 of 2 on \(a)") == true, "\(recoveries)")
            #expect(serial.bootCount() == 3, "vm1 restarted while flapping")
            #expect(ha.vm(0)?.state == "PRIM" && ha.vm(1)?.state == "SECOND", "vm1 left A")
            #expect(try Self.recoveries(ha, 1).isEmpty)
            _ = watch
        }
    }
}
