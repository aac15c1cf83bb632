import ReplicationPolicy
/// How a split brain (``SyncDecision/splitBrain``) is settled by policy, from the local node's
/// point of view. Pure: both nodes run it on the same (mirrored) inputs and reach mirrored
/// results. Table in `docs/format.md`.
///
/// vmha's link always runs from the primary that runs the guest to a secondary, so this is
/// DRBD's after-sb-1pri `consensus`: the after-sb-0pri policy picks a victim, and the victim's
/// changes are discarded only if it is the secondary. A running guest's disk is never
/// overwritten under it: if the policy picks the primary, nothing happens and it is reported.
public enum SplitBrainResolution: Sendable, Hashable {
    /// Discard this side's changes: it becomes the peer's sync target. `incremental`: only the
    /// grains set in either side's bitmap are copied; otherwise everything is.
    case discardLocal(incremental: Bool)
    /// Discard the peer's changes: this side becomes its sync source.
    case discardPeer(incremental: Bool)
    /// Leave both sides untouched; stop and report `reason`.
    case disconnect(reason: String)

    public static func resolve(
        policy: SplitBrainPolicy, peerPolicy: SplitBrainPolicy, local: ReplicaState, peer: ReplicaState,
        localIsPrimary: Bool
    ) -> SplitBrainResolution {
        // Before any policy: a secondary that answered no write its peer lacks since they were
        // last in sync holds nothing acknowledged, so its changes go (e.g. a switchover target
        // promoted and crashed before its link attached, while the peer took over: vmha-sim).
        // Both sides see both flags, so they agree whatever their policies.
        if secondaryAnsweredNothing(local: local, peer: peer, localIsPrimary: localIsPrimary) {
            let incremental = trackedIncrementally(local, peer)
            return localIsPrimary ? .discardPeer(incremental: incremental) : .discardLocal(incremental: incremental)
        }
        // Each side acts on its own decision: they agree only if they follow the same rule.
        guard policy == peerPolicy else {
            return .disconnect(reason: "split-brain policies differ (\(policy.rawValue) here, \(peerPolicy.rawValue) on the peer)")
        }
        let discardLocal: Bool
        switch victim(policy: policy, local: local, peer: peer, localIsPrimary: localIsPrimary) {
        case .undecided(let reason): return .disconnect(reason: reason)
        case .local: discardLocal = true
        case .peer: discardLocal = false
        }
        if discardLocal == localIsPrimary {
            let changed = discardLocal ? local.dirtyBytes : peer.dirtyBytes
            return .disconnect(
                reason: "\(policy.rawValue) chose to discard the changes of the running primary (\(discardLocal ? "this host" : "the peer"), \(changed) bytes); a running guest's disk is never overwritten")
        }
        let incremental = trackedIncrementally(local, peer)
        return discardLocal ? .discardLocal(incremental: incremental) : .discardPeer(incremental: incremental)
    }

    /// Bits are cleared only by a completed resync, so when both sides track changes from a
    /// shared generation, the two bitmaps together hold every grain either side changed since
    /// they were last in sync (DRBD's bitmap-based resolution). Otherwise copy everything.
    private static func trackedIncrementally(_ local: ReplicaState, _ peer: ReplicaState) -> Bool {
        let l = local.generations, p = peer.generations
        let lTracked = Set([l.bitmap] + l.history).subtracting([0])
        let pTracked = Set([p.bitmap] + p.history).subtracting([0])
        return l.bitmap != 0 && p.bitmap != 0 && !lTracked.isDisjoint(with: pTracked)
    }

    /// Whether the secondary's changes go by the rule that comes before any policy.
    public static func secondaryAnsweredNothing(local: ReplicaState, peer: ReplicaState, localIsPrimary: Bool) -> Bool {
        !(localIsPrimary ? peer.answeredWithoutPeer : local.answeredWithoutPeer)
    }

    private enum Victim { case local, peer, undecided(String) }

    /// Whose changes the policy discards, or why it cannot tell. Ties never go to a
    /// tie-breaker: they fall back to the default, `disconnect`.
    private static func victim(
        policy: SplitBrainPolicy, local: ReplicaState, peer: ReplicaState, localIsPrimary: Bool
    ) -> Victim {
        let l = local.dirtyBytes, p = peer.dirtyBytes
        switch policy {
        case .disconnect:
            return .undecided("the split-brain policy is disconnect")
        case .discardYoungerPrimary:
            switch (local.generations.origin, peer.generations.origin) {
            case (.promotion, .continuedAsPrimary): return .local
            case (.continuedAsPrimary, .promotion): return .peer
            case let (mine, theirs):
                return .undecided(
                    "discard-younger-primary cannot tell which side became primary after the split (generation origin here \(mine), on the peer \(theirs))")
            }
        case .discardLeastChanges:
            if l == p { return .undecided("discard-least-changes: both sides changed \(l) bytes") }
            return l < p ? .local : .peer
        case .discardZeroChanges:
            // Neither changed anything: discarding the secondary loses nothing at all.
            if l == 0 && p == 0 { return localIsPrimary ? .peer : .local }
            if l == 0 { return .local }
            if p == 0 { return .peer }
            return .undecided("discard-zero-changes: both sides have changes (\(l) bytes here, \(p) bytes on the peer)")
        }
    }
}
