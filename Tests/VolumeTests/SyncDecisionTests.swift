import Testing
@testable import Volume

@Suite struct SyncDecisionTests {
    typealias GI = GenerationIdentifiers

    func s(_ current: UInt64, _ bitmap: UInt64 = 0, _ h: [UInt64] = [0, 0], crashed: Bool = false,
           c: VolumeMetadata.Consistency = .consistent) -> ReplicaState {
        ReplicaState(generations: GI(current: current, bitmap: bitmap, history: h), crashedPrimary: crashed, consistency: c)
    }

    func decide(_ l: ReplicaState, _ p: ReplicaState, tie: Bool = true) -> SyncDecision {
        SyncDecision.decide(local: l, peer: p, localWinsTies: tie)
    }

    /// One test per row of the table in docs/format.md; each also checks the
    /// mirror image, since both nodes run the same function.
    @Test func rule1BothJustCreated() { #expect(decide(s(0), s(0)) == .noSync) }
    @Test func rule2And3JustCreatedTakesEverything() {
        #expect(decide(s(0), s(0xA)) == .fullSync(source: .peer))
        #expect(decide(s(0xA), s(0)) == .fullSync(source: .local))
    }
    @Test func rule4BothInconsistent() {
        #expect(decide(s(0xA, c: .inconsistent), s(0xB, c: .inconsistent)) == .noConsistentData)
    }
    @Test func rule5And6InconsistentSideIsTarget() {
        // Equal currents: the inconsistent side carries its source's generation — a broken
        // resync from that source, which resumes from the source's bitmap.
        #expect(decide(s(0xA, c: .inconsistent), s(0xA)) == .syncTargetIncremental)
        #expect(decide(s(0xA), s(0xA, c: .inconsistent)) == .syncSourceIncremental)
        #expect(decide(s(0xA, c: .inconsistent), s(0xB, 0xA)) == .syncTargetIncremental)
        #expect(decide(s(0xB, 0xA), s(0xA, c: .inconsistent)) == .syncSourceIncremental)
        // Nothing ties them: the inconsistent side takes everything.
        #expect(decide(s(0xA, c: .inconsistent), s(0xC)) == .fullSync(source: .peer))
        #expect(decide(s(0xC), s(0xA, c: .inconsistent)) == .fullSync(source: .local))
    }
    @Test func rule7SameGenerationNoSync() {
        #expect(decide(s(0xA), s(0xA)) == .noSync)
        #expect(decide(s(0xA, c: .outdated), s(0xA)) == .noSync)
    }
    @Test func rule8And9CrashedPrimaryIsSource() {
        #expect(decide(s(0xA, crashed: true), s(0xA)) == .syncSourceIncremental)
        #expect(decide(s(0xA), s(0xA, crashed: true)) == .syncTargetIncremental)
    }
    @Test func rule10BothCrashedUsesTieBreaker() {
        #expect(decide(s(0xA, crashed: true), s(0xA, crashed: true), tie: true) == .syncSourceIncremental)
        #expect(decide(s(0xA, crashed: true), s(0xA, crashed: true), tie: false) == .syncTargetIncremental)
    }
    @Test func rule11And12BitmapTracksPeer() {
        // I went on (B) from the peer's generation A and tracked changes.
        #expect(decide(s(0xB, 0xA), s(0xA)) == .syncSourceIncremental)
        #expect(decide(s(0xA), s(0xB, 0xA)) == .syncTargetIncremental)
    }
    @Test func rule13BothWentOnFromSameGeneration() {
        #expect(decide(s(0xB, 0xA), s(0xC, 0xA)) == .splitBrain)
        #expect(decide(s(0xC, 0xA), s(0xB, 0xA)) == .splitBrain)
    }
    @Test func rule14And15OlderAncestorNeedsFullSync() {
        // Peer is at A, which I left two generations ago (no bitmap covers it).
        #expect(decide(s(0xC, 0xB, [0xA, 0]), s(0xA)) == .fullSync(source: .local))
        #expect(decide(s(0xA), s(0xC, 0xB, [0xA, 0])) == .fullSync(source: .peer))
    }
    @Test func rule16SharedHistoryButDivergedIsSplitBrain() {
        #expect(decide(s(0xC, 0xB, [0xA, 0]), s(0xE, 0xD, [0xA, 0])) == .splitBrain)
    }
    @Test func rule17NothingInCommonIsUnrelated() {
        #expect(decide(s(0xA, 0xB, [0xC, 0xD]), s(0x1, 0x2, [0x3, 0x4])) == .unrelated)
    }

    /// Lifecycle: connected at A; primary loses peer and starts B; reconnect is
    /// an incremental sync from it; after resync both agree and nothing syncs.
    @Test func lifecycleThroughGenerationEvents() {
        var primary = GI(current: 0xA)
        var secondary = GI(current: 0xA)
        primary.startNewGeneration(0xB, origin: .continuedAsPrimary)
        #expect(primary.current == 0xB && primary.bitmap == 0xA)
        #expect(decide(ReplicaState(generations: primary), ReplicaState(generations: secondary)) == .syncSourceIncremental)
        primary.resyncFinishedAsSource()
        secondary.resyncFinishedAsTarget(sourceCurrent: primary.current)
        #expect(primary.bitmap == 0 && primary.history[0] == 0xA)
        #expect(decide(ReplicaState(generations: primary), ReplicaState(generations: secondary)) == .noSync)
        // Both then promote independently: split brain.
        var a = primary, b = secondary
        a.startNewGeneration(0xC, origin: .continuedAsPrimary)
        b.startNewGeneration(0xD, origin: .promotion)
        #expect(decide(ReplicaState(generations: a), ReplicaState(generations: b)) == .splitBrain)
        // A second new generation while still tracking keeps the link in history.
        a.startNewGeneration(0xE, origin: .continuedAsPrimary)
        #expect(a.bitmap == 0xC && a.history == [0xB, 0xA])
    }
}
