import ReplicationPolicy

/// What a node knows about one side of a connection when deciding how to resync.
public struct ReplicaState: Sendable, Hashable {
    public var generations: GenerationIdentifiers
    /// Set while primary with writes possibly in flight; still set after a crash.
    public var crashedPrimary: Bool
    /// Whether the disk's data is usable as a sync source.
    public var consistency: VolumeMetadata.Consistency
    /// Bytes set in the dirty bitmap. Bits are cleared only by a completed resync, so after a
    /// split brain this is what the side changed since both were last in sync (the split-brain
    /// policies compare it); it never changes the resync direction.
    public var dirtyBytes: UInt64
    /// This side answered guest writes its peer missed since they were last in sync
    /// (``VolumeMetadata/Flags/answeredWithoutPeer``).
    public var answeredWithoutPeer: Bool

    public init(generations: GenerationIdentifiers, crashedPrimary: Bool = false,
                consistency: VolumeMetadata.Consistency = .consistent, dirtyBytes: UInt64 = 0, answeredWithoutPeer: Bool = false) {
        self.generations = generations
        self.crashedPrimary = crashedPrimary
        self.consistency = consistency
        self.dirtyBytes = dirtyBytes
        self.answeredWithoutPeer = answeredWithoutPeer
    }
}

/// The outcome of comparing generation identifiers at reconnect, from the
/// local node's point of view. Pure: see ``decide(local:peer:localWinsTies:)``.
public enum SyncDecision: Sendable, Hashable {
    public enum Side: Sendable, Hashable { case local, peer }

    /// Same data generation; nothing to copy.
    case noSync
    /// I am the sync source; copy the grains set in (my ∪ peer's) bitmap.
    case syncSourceIncremental
    /// I am the sync target; the peer copies its (∪ my) bitmap's grains to me.
    case syncTargetIncremental
    /// Related generations but no bitmap covers the difference: copy everything from `source`.
    case fullSync(source: Side)
    /// Both sides wrote independently since a common ancestor. Needs an operator
    /// (or a policy, ``SplitBrainResolution``) to pick a victim; never resolved here.
    case splitBrain
    /// No common history: these disks are not replicas of each other.
    case unrelated
    /// Neither side has consistent data to sync from.
    case noConsistentData

    /// Decides the resync direction, following DRBD's rules (first match wins;
    /// table in `docs/format.md`).
    ///
    /// - Parameter localWinsTies: deterministic tie-breaker for the one
    ///   symmetric case (both sides crashed as primary with equal generations),
    ///   e.g. "my node id is lower". Both nodes must compute opposite values.
    public static func decide(local: ReplicaState, peer: ReplicaState, localWinsTies: Bool) -> SyncDecision {
        let l = local.generations, p = peer.generations
        let justCreated = GenerationIdentifiers.justCreated

        // 1–3: freshly created disks take everything from a side with data.
        if l.current == justCreated && p.current == justCreated { return .noSync }
        if l.current == justCreated { return .fullSync(source: .peer) }
        if p.current == justCreated { return .fullSync(source: .local) }

        // 4–6: an inconsistent disk can only be a target.
        let localUsable = local.consistency != .inconsistent
        let peerUsable = peer.consistency != .inconsistent
        if !localUsable && !peerUsable { return .noConsistentData }
        // A target carries its source's current generation while it resyncs; equal currents
        // mean a resync from that source broke off, and the source's bitmap still holds the rest.
        if !localUsable {
            return (p.bitmap == l.current && p.bitmap != 0) || p.current == l.current
                ? .syncTargetIncremental : .fullSync(source: .peer)
        }
        if !peerUsable {
            return (l.bitmap == p.current && l.bitmap != 0) || l.current == p.current
                ? .syncSourceIncremental : .fullSync(source: .local)
        }

        // 7–10: same generation. A crashed primary may have written AL extents
        // the peer never saw (its recovery marked them dirty): it is the source.
        if l.current == p.current {
            switch (local.crashedPrimary, peer.crashedPrimary) {
            case (false, false): return .noSync
            case (true, false): return .syncSourceIncremental
            case (false, true): return .syncTargetIncremental
            case (true, true): return localWinsTies ? .syncSourceIncremental : .syncTargetIncremental
            }
        }
        // 11–12: my bitmap started at the peer's current generation (or vice versa).
        if l.bitmap != 0 && l.bitmap == p.current {
            return p.bitmap != 0 && p.bitmap == l.current ? .splitBrain : .syncSourceIncremental
        }
        if p.bitmap != 0 && p.bitmap == l.current { return .syncTargetIncremental }
        // 13: both moved on from the same generation independently.
        if l.bitmap != 0 && l.bitmap == p.bitmap { return .splitBrain }
        // 14–15: one side is an older ancestor whose changes are not tracked.
        if l.history.contains(p.current) && p.current != 0 { return .fullSync(source: .local) }
        if p.history.contains(l.current) && l.current != 0 { return .fullSync(source: .peer) }
        // 16: any shared ancestor means divergence.
        let lAncestors = Set([l.bitmap] + l.history).subtracting([0])
        let pAncestors = Set([p.bitmap] + p.history).subtracting([0])
        if !lAncestors.isDisjoint(with: pAncestors) || lAncestors.contains(p.current) || pAncestors.contains(l.current) {
            return .splitBrain
        }
        // 17
        return .unrelated
    }
}

extension ReplicaState {
    /// What a heartbeat carries of this replica.
    public var summary: GenerationSummary {
        GenerationSummary(
            current: generations.current, bitmap: generations.bitmap, history: generations.history,
            consistency: GenerationSummary.Consistency(rawValue: consistency.rawValue) ?? .inconsistent, crashedPrimary: crashedPrimary,
            answeredWithoutPeer: answeredWithoutPeer)
    }

    /// The replica a heartbeat described (its dirty byte count is not sent: it never changes a direction).
    public init(_ summary: GenerationSummary) {
        self.init(
            generations: GenerationIdentifiers(current: summary.current, bitmap: summary.bitmap, history: summary.history),
            crashedPrimary: summary.crashedPrimary,
            consistency: VolumeMetadata.Consistency(rawValue: summary.consistency.rawValue) ?? .inconsistent,
            answeredWithoutPeer: summary.answeredWithoutPeer)
    }
}

extension SyncDecision {
    /// Which side of a VM (all its volumes) is newer, by the rules the link's handshake applies:
    /// the side a connect would make the sync source is the newer. Nil when either side's volumes
    /// are not known (an older peer, volumes not open) or their counts differ. Volumes that
    /// disagree on the direction make the VM diverged.
    public static func relation(local: [GenerationSummary], peer: [GenerationSummary], localWinsTies: Bool) -> DataRelation? {
        guard !local.isEmpty, local.count == peer.count else { return nil }
        var localNewer = false, peerNewer = false
        for (mine, theirs) in zip(local, peer) {
            // Without the crashed-primary flags: equal generations hold the same answered writes
            // (protocol C), and whichever side runs starts a new generation and becomes the source.
            var l = ReplicaState(mine), p = ReplicaState(theirs)
            l.crashedPrimary = false
            p.crashedPrimary = false
            switch decide(local: l, peer: p, localWinsTies: localWinsTies) {
            case .noSync: break
            case .syncSourceIncremental, .fullSync(source: .local): localNewer = true
            case .syncTargetIncremental, .fullSync(source: .peer): peerNewer = true
            case .splitBrain:
                // Both moved on from the same generation; what counts is who *answered* writes
                // the other lacks (the side that did not is discarded by the link's resync).
                switch (l.answeredWithoutPeer, p.answeredWithoutPeer) {
                case (true, true): return .diverged
                case (true, false): localNewer = true
                case (false, true): peerNewer = true
                case (false, false): break
                }
            case .unrelated: return .diverged
            case .noConsistentData: return nil  // neither copy can run: the module machine says so
            }
        }
        switch (localNewer, peerNewer) {
        case (false, false): return .same
        case (true, false): return .localNewer
        case (false, true): return .peerNewer
        case (true, true): return .diverged
        }
    }
}
