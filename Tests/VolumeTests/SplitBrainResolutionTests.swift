import ReplicationPolicy
import Testing
@testable import Volume

/// One test per row of the split-brain table in docs/format.md. The usual split: both sides were
/// in sync at generation 0xC; the old primary went on alone (0xA1), the secondary was promoted (0xB1).
@Suite struct SplitBrainResolutionTests {
    /// Both sides answered writes alone (a true split brain) unless `answered` says otherwise.
    func side(_ current: UInt64, origin: GenerationOrigin, dirty: UInt64, bitmap: UInt64 = 0xC,
              history: [UInt64] = [0x7, 0], answered: Bool = true) -> ReplicaState {
        ReplicaState(
            generations: GenerationIdentifiers(current: current, bitmap: bitmap, history: history, origin: origin),
            dirtyBytes: dirty, answeredWithoutPeer: answered)
    }

    var olderPrimary: ReplicaState { side(0xA1, origin: .continuedAsPrimary, dirty: 1 << 20) }
    var youngerPrimary: ReplicaState { side(0xB1, origin: .promotion, dirty: 64 << 10) }

    func resolve(_ policy: SplitBrainPolicy, _ local: ReplicaState, _ peer: ReplicaState, primary: Bool,
                 peerPolicy: SplitBrainPolicy? = nil) -> SplitBrainResolution {
        SplitBrainResolution.resolve(
            policy: policy, peerPolicy: peerPolicy ?? policy, local: local, peer: peer, localIsPrimary: primary)
    }

    func isDisconnect(_ r: SplitBrainResolution, mentioning text: String) -> Bool {
        guard case .disconnect(let reason) = r else { return false }
        return reason.contains(text)
    }

    /// Before any policy: a secondary that answered no write alone since the split holds nothing
    /// acknowledged, so its changes go, whatever the policies (even differing ones). vmha-sim: a
    /// switchover target promoted and crashed before its link attached while the peer took over.
    @Test func row0ASecondaryThatAnsweredNothingAloneIsDiscardedWhateverThePolicy() {
        let unanswered = side(0xB1, origin: .promotion, dirty: 4096, answered: false)
        for policy in SplitBrainPolicy.allCases {
            #expect(resolve(policy, olderPrimary, unanswered, primary: true, peerPolicy: .disconnect) == .discardPeer(incremental: true))
            #expect(resolve(policy, unanswered, olderPrimary, primary: false, peerPolicy: .disconnect) == .discardLocal(incremental: true))
        }
        // A primary that answered nothing alone while the secondary did: the running guest lacks
        // answered writes; never settled here (the HA policy keeps such a copy from running).
        let unansweredPrimary = side(0xA1, origin: .continuedAsPrimary, dirty: 4096, answered: false)
        #expect(isDisconnect(resolve(.disconnect, unansweredPrimary, youngerPrimary, primary: true), mentioning: "disconnect"))
    }

    @Test func row1DifferentPoliciesNeverResolve() {
        let r = resolve(.discardLeastChanges, youngerPrimary, olderPrimary, primary: false, peerPolicy: .disconnect)
        #expect(isDisconnect(r, mentioning: "policies differ (discard-least-changes here, disconnect on the peer)"))
    }

    @Test func row2DisconnectIsTheDefault() {
        #expect(isDisconnect(resolve(.disconnect, youngerPrimary, olderPrimary, primary: false), mentioning: "disconnect"))
    }

    @Test func row3YoungerPrimaryDiscardsTheSideThatWasPromotedAfterTheSplit() {
        #expect(resolve(.discardYoungerPrimary, youngerPrimary, olderPrimary, primary: false) == .discardLocal(incremental: true))
        #expect(resolve(.discardYoungerPrimary, olderPrimary, youngerPrimary, primary: true) == .discardPeer(incremental: true))
        // Undecidable when both (or either) origins say the same or nothing.
        for (a, b) in [(GenerationOrigin.promotion, GenerationOrigin.promotion), (.continuedAsPrimary, .continuedAsPrimary),
                       (.unknown, .continuedAsPrimary), (.promotion, .unknown)] {
            let r = resolve(.discardYoungerPrimary, side(0xB1, origin: a, dirty: 1), side(0xA1, origin: b, dirty: 2), primary: false)
            #expect(isDisconnect(r, mentioning: "cannot tell"), "\(a) \(b)")
        }
    }

    @Test func row4LeastChangesDiscardsTheSideWithFewerChangedBytes() {
        #expect(resolve(.discardLeastChanges, youngerPrimary, olderPrimary, primary: false) == .discardLocal(incremental: true))
        #expect(resolve(.discardLeastChanges, olderPrimary, youngerPrimary, primary: true) == .discardPeer(incremental: true))
        let tie = resolve(.discardLeastChanges, side(0xB1, origin: .promotion, dirty: 4096),
                          side(0xA1, origin: .continuedAsPrimary, dirty: 4096), primary: false)
        #expect(isDisconnect(tie, mentioning: "both sides changed 4096 bytes"))
    }

    @Test func row5ZeroChangesDiscardsOnlyASideThatChangedNothing() {
        let idle = side(0xB1, origin: .promotion, dirty: 0)
        #expect(resolve(.discardZeroChanges, idle, olderPrimary, primary: false) == .discardLocal(incremental: true))
        #expect(isDisconnect(resolve(.discardZeroChanges, youngerPrimary, olderPrimary, primary: false), mentioning: "both sides have changes"))
        // Neither changed anything: the secondary goes, whichever side that is.
        let idleToo = side(0xA1, origin: .continuedAsPrimary, dirty: 0)
        #expect(resolve(.discardZeroChanges, idle, idleToo, primary: false) == .discardLocal(incremental: true))
        #expect(resolve(.discardZeroChanges, idle, idleToo, primary: true) == .discardPeer(incremental: true))
    }

    @Test func row6APolicyThatPicksTheRunningPrimaryChangesNothing() {
        // The secondary changed more: least-changes picks the primary.
        let busySecondary = side(0xB1, origin: .promotion, dirty: 8 << 20)
        for primary in [true, false] {
            let r = primary
                ? resolve(.discardLeastChanges, olderPrimary, busySecondary, primary: true)
                : resolve(.discardLeastChanges, busySecondary, olderPrimary, primary: false)
            #expect(isDisconnect(r, mentioning: "running primary"), "\(r)")
        }
        // The promoted side runs the guest now: younger-primary picks it.
        #expect(isDisconnect(resolve(.discardYoungerPrimary, youngerPrimary, olderPrimary, primary: true), mentioning: "running primary"))
    }

    @Test func row7WithoutASharedTrackedGenerationTheVictimGetsAFullSync() {
        // Each bitmap started at the other's current: no common starting point for both bitmaps.
        let a = side(0xA1, origin: .continuedAsPrimary, dirty: 1 << 20, bitmap: 0xB1, history: [0, 0])
        let b = side(0xB1, origin: .promotion, dirty: 4096, bitmap: 0xA1, history: [0, 0])
        #expect(SyncDecision.decide(local: b, peer: a, localWinsTies: false) == .splitBrain)
        #expect(resolve(.discardLeastChanges, b, a, primary: false) == .discardLocal(incremental: false))
        // Diverged after several generations but still sharing history (rule 16): incremental.
        let c = side(0xA2, origin: .continuedAsPrimary, dirty: 1 << 20, bitmap: 0xA1, history: [0xC, 0])
        #expect(SyncDecision.decide(local: youngerPrimary, peer: c, localWinsTies: false) == .splitBrain)
        #expect(resolve(.discardLeastChanges, youngerPrimary, c, primary: false) == .discardLocal(incremental: true))
    }

    /// The victim's generations through the resolution: its own generation goes to history, a
    /// broken resync resumes from the same source, and afterwards both sides agree.
    @Test func theVictimKeepsItsDiscardedGenerationInHistoryAndEndsInSync() {
        var a = GenerationIdentifiers(current: 0xC), b = GenerationIdentifiers(current: 0xC)
        a.startNewGeneration(0xA1, origin: .continuedAsPrimary)
        b.startNewGeneration(0xB1, origin: .promotion)
        #expect(SyncDecision.decide(local: ReplicaState(generations: b), peer: ReplicaState(generations: a), localWinsTies: false) == .splitBrain)
        b.discardForSplitBrain(sourceCurrent: a.current)
        #expect(b.current == 0xA1 && b.history[0] == 0xB1 && b.origin == .unknown)
        let target = ReplicaState(generations: b, consistency: .inconsistent)
        #expect(SyncDecision.decide(local: target, peer: ReplicaState(generations: a), localWinsTies: false) == .syncTargetIncremental)
        a.resyncFinishedAsSource()
        b.resyncFinishedAsTarget(sourceCurrent: a.current)
        #expect(SyncDecision.decide(local: ReplicaState(generations: b), peer: ReplicaState(generations: a), localWinsTies: false) == .noSync)
        #expect(b.history.contains(0xB1))
    }

    /// Both nodes run the function; they must reach the same conclusion whatever the inputs.
    @Test func bothSidesAlwaysAgree() {
        let origins: [GenerationOrigin] = [.unknown, .continuedAsPrimary, .promotion]
        let dirt: [UInt64] = [0, 4096, 1 << 20]
        for policy in SplitBrainPolicy.allCases {
            for (oa, ob) in origins.flatMap({ a in origins.map { (a, $0) } }) {
                for (da, db) in dirt.flatMap({ a in dirt.map { (a, $0) } }) {
                    let a = side(0xA1, origin: oa, dirty: da), b = side(0xB1, origin: ob, dirty: db)
                    for aIsPrimary in [true, false] {
                        let here = resolve(policy, a, b, primary: aIsPrimary)
                        let there = resolve(policy, b, a, primary: !aIsPrimary)
                        switch (here, there) {
                        case (.disconnect, .disconnect): break
                        case (.discardLocal(let x), .discardPeer(let y)), (.discardPeer(let x), .discardLocal(let y)):
                            #expect(x == y)
                        default: Issue.record("\(policy) \(oa)/\(ob) \(da)/\(db): \(here) vs \(there)")
                        }
                        // Whatever the policy, the running primary is never the one discarded.
                        if case .discardLocal = here { #expect(!aIsPrimary) }
                        if case .discardPeer = here { #expect(aIsPrimary) }
                    }
                }
            }
        }
    }
}
