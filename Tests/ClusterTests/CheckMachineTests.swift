import Cluster
import Foundation
import Testing

/// The check machine and the recovery policy (issue 15), in memory: time is only what the events say.
@Suite("Checks and recovery policy")
struct CheckMachineTests {
    let t = CheckThresholds(failuresBeforeAction: 3, startupGrace: .seconds(60), flapChanges: 4, flapWindow: .seconds(600))

    func ms(_ value: Int64) -> MonotonicInstant { .milliseconds(value) }

    /// Feeds events in order; returns the last status and every action, in order.
    func run(_ status: CheckStatus, _ events: [CheckEvent]) -> (CheckStatus, [CheckAction]) {
        var status = status, actions: [CheckAction] = []
        for event in events {
            let next = CheckMachine.transition(from: status, on: event, thresholds: t)
            status = next.status
            actions += next.actions
        }
        return (status, actions)
    }

    func recovers(_ actions: [CheckAction]) -> Int { actions.filter { if case .recover = $0 { true } else { false } }.count }

    @Test func aBootingGuestsFailuresDoNotCountUntilItsGraceEnds() {
        let booted = run(CheckStatus(), [.domainStarted(at: ms(0))]).0
        let inGrace = run(booted, (1...10).map { .failed(at: ms(Int64($0) * 5_000), reason: "refused") })
        #expect(inGrace.0.health == .starting && inGrace.0.consecutiveFailures == 0 && inGrace.1.isEmpty)
        let after = run(inGrace.0, [61, 62, 63].map { .failed(at: ms($0 * 1_000), reason: "refused") })
        #expect(after.0.health == .failed)
        #expect(after.1 == [.report(.failing, "refused"), .report(.failed, "refused"), .recover("refused")])
    }

    @Test func recoveryIsAskedForOncePerFailureAndAPassResetsTheCount() {
        var (status, actions) = run(CheckStatus(health: .healthy), [.failed(at: ms(1), reason: "x"), .failed(at: ms(2), reason: "x"), .passed(at: ms(3))])
        #expect(status.health == .healthy && status.consecutiveFailures == 0 && recovers(actions) == 0)
        (status, actions) = run(status, (4...20).map { .failed(at: ms(Int64($0)), reason: "x") })
        #expect(status.health == .failed && recovers(actions) == 1, "\(actions)")
        // The restart starts the check over: after its grace, failures count again.
        (status, actions) = run(status, [.domainStarted(at: ms(100))] + (1...3).map { .failed(at: ms(61_000 + Int64($0)), reason: "x") })
        #expect(status.health == .failed && recovers(actions) == 1)
    }

    @Test func aFlappingCheckIsReportedNotActedOnUntilAWholeWindowIsQuiet() {
        var status = CheckStatus(health: .healthy), actions: [CheckAction] = []
        var now: Int64 = 0
        func cycle() {
            var events: [CheckEvent] = (0..<3).map { _ in now += 1_000; return .failed(at: ms(now), reason: "down") }
            now += 1_000
            events.append(.passed(at: ms(now)))
            let r = run(status, events)
            status = r.0
            actions += r.1
        }
        cycle()  // failed (change 1), healthy (change 2)
        cycle()  // failed would be change 3 → acted on; healthy: change 4
        #expect(recovers(actions) == 2)
        cycle()  // the 5th change: flapping, no recovery
        #expect(status.health == .flapping, "\(status)")
        #expect(recovers(actions) == 2)
        #expect(actions.contains { if case .report(.flapping, _) = $0 { true } else { false } })
        for _ in 0..<5 { cycle() }
        #expect(status.health == .flapping && recovers(actions) == 2, "flapping is not acted on")
        for _ in 0..<5 { now += 200_000; cycle() }
        #expect(status.health == .flapping && recovers(actions) == 2, "a check that keeps flapping stays flapping past one window")
        // A whole window without a change of verdict: the next results count again.
        now += 600_000
        let quiet = run(status, [.failed(at: ms(now), reason: "down"), .failed(at: ms(now + 1), reason: "down"), .failed(at: ms(now + 2), reason: "down")])
        #expect(quiet.0.health == .failed && recovers(quiet.1) == 1, "\(quiet)")
        let healed = run(status, [.passed(at: ms(now))])
        #expect(healed.0.health == .healthy)
    }

    @Test func restartsThenAMoveToAReadyPeerThenNothingWithinTheHoldDown() {
        let limits = RecoveryLimits(restarts: 3, window: .seconds(600), holdDown: .seconds(1800))
        let ready = PeerReadiness(alive: true, replicaUpToDate: true)
        var record = RecoveryRecord()
        var decisions: [RecoveryDecision] = []
        for i in 0..<4 {
            let r = RecoveryPolicy.decide(record, at: ms(Int64(i) * 60_000), limits: limits, peer: ready)
            record = r.record
            decisions.append(r.decision)
        }
        #expect(decisions == [.restartHere(attempt: 1, of: 3), .restartHere(attempt: 2, of: 3), .restartHere(attempt: 3, of: 3), .moveToPeer])
        #expect(RecoveryPolicy.isHeld(record, at: ms(180_000 + 1_799_999), limits: limits))
        #expect(!RecoveryPolicy.isHeld(record, at: ms(180_000 + 1_800_000), limits: limits))

        // On the peer (the record moved with the VM) the service is dead too: restarts, then it
        // stays — not moved back within the hold-down.
        var there = record
        for i in 0..<3 {
            let r = RecoveryPolicy.decide(there, at: ms(200_000 + Int64(i) * 1_000), limits: limits, peer: ready)
            #expect(r.decision == .restartHere(attempt: i + 1, of: 3))
            there = r.record
        }
        let held = RecoveryPolicy.decide(there, at: ms(210_000), limits: limits, peer: ready)
        guard case .giveUp(let reason) = held.decision else { Issue.record("moved back: \(held.decision)"); return }
        #expect(reason.contains("held"))
        // After the hold-down the policy may move it again.
        let later = RecoveryPolicy.decide(held.record, at: ms(180_000 + 1_800_000), limits: limits, peer: ready)
        #expect(later.decision == .restartHere(attempt: 1, of: 3), "the old restarts left the window")
    }

    @Test func restartsOutsideTheWindowDoNotCount() {
        let limits = RecoveryLimits(restarts: 2, window: .seconds(60))
        var record = RecoveryRecord()
        for i in 0..<10 {
            let r = RecoveryPolicy.decide(record, at: ms(Int64(i) * 61_000), limits: limits, peer: PeerReadiness(alive: false, replicaUpToDate: false))
            #expect(r.decision == .restartHere(attempt: 1, of: 2))
            record = r.record
        }
    }

    @Test func aPeerThatCannotTakeTheVMIsNamedInTheReason() {
        let limits = RecoveryLimits(restarts: 0)
        let cases: [(PeerReadiness, String)] = [
            (PeerReadiness(alive: false, replicaUpToDate: true), "the peer is lost"),
            (PeerReadiness(alive: true, replicaUpToDate: false), "not UpToDate"),
            (PeerReadiness(alive: true, replicaUpToDate: true, failingChecks: ["interface eth1"]), "interface eth1"),
        ]
        for (peer, expected) in cases {
            let r = RecoveryPolicy.decide(RecoveryRecord(), at: ms(0), limits: limits, peer: peer)
            guard case .giveUp(let reason) = r.decision else { Issue.record("\(peer): \(r.decision)"); continue }
            #expect(reason.contains(expected), "\(reason)")
            #expect(r.record.lastCheckerMove == nil)
        }
    }

    @Test func documentedTableMatchesCode() throws {
        try Repository.expectGeneratedSection("CHECK TABLE", in: "docs/ha.md", toBe: CheckMachine.markdownTable(), rerun: "CheckMachineTests")
    }

    /// A failed host check moves what runs here, highest priority first, when the peer can take
    /// it; a reason for each VM that stays (issue 15, `Evacuation`).
    @Test func evacuationMovesWhatCanMoveAndSaysWhyTheRestStays() {
        let vms = [
            Evacuation.VM(name: "low", priority: 1, runsHere: true, peerReplicaUpToDate: true),
            Evacuation.VM(name: "high", priority: 9, runsHere: true, peerReplicaUpToDate: true),
            Evacuation.VM(name: "syncing", priority: 5, runsHere: true, peerReplicaUpToDate: false),
            Evacuation.VM(name: "held", priority: 3, runsHere: true, peerReplicaUpToDate: true, held: true),
            Evacuation.VM(name: "elsewhere", priority: 7, runsHere: false, peerReplicaUpToDate: true),
        ]
        #expect(Evacuation.plan(failingHere: [], peerAlive: true, failingOnPeer: [], vms: vms).isEmpty)
        let plan = Evacuation.plan(failingHere: ["interface vmbr0"], peerAlive: true, failingOnPeer: [], vms: vms)
        #expect(plan == [
            .move(vm: "high"),
            .stay(vm: "syncing", reason: "host check interface vmbr0 failed here; the peer's replica is not UpToDate"),
            .stay(vm: "held", reason: "host check interface vmbr0 failed here; held here by an earlier checker move (hold-down)"),
            .move(vm: "low"),
        ])
        // The same trouble on the peer, or no peer: nothing moves.
        let both = Evacuation.plan(failingHere: ["interface vmbr0"], peerAlive: true, failingOnPeer: ["interface br0"], vms: vms)
        #expect(both.allSatisfy { if case .stay(_, let reason) = $0 { reason.hasSuffix("the peer's host check interface br0 fails too") } else { false } } && both.count == 4)
        let alone = Evacuation.plan(failingHere: ["storage"], peerAlive: false, failingOnPeer: [], vms: vms)
        #expect(alone.allSatisfy { if case .stay(_, let reason) = $0 { reason.hasSuffix("the peer is lost") } else { false } })
    }
}
