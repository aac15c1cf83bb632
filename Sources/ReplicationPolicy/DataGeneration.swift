/// One volume's data generation as the heartbeat carries it: what the peer needs to tell which
/// copy is newer without connecting (DRBD compares the same UUIDs at connect time). The fields
/// mirror `Volume.GenerationIdentifiers` and the metadata's consistency flag; the comparison is
/// `SyncDecision.relation` in Volume, the same rules the replication link follows.
public struct GenerationSummary: Sendable, Hashable {
    public enum Consistency: UInt8, Sendable, Hashable, CaseIterable {
        case inconsistent = 0, outdated = 1, consistent = 2
    }

    public var current: UInt64
    public var bitmap: UInt64
    /// Two entries, the newer first.
    public var history: [UInt64]
    public var consistency: Consistency
    public var crashedPrimary: Bool
    /// The copy answered guest writes its peer missed since they were last in sync.
    public var answeredWithoutPeer: Bool

    public init(
        current: UInt64, bitmap: UInt64 = 0, history: [UInt64] = [0, 0], consistency: Consistency = .consistent, crashedPrimary: Bool = false,
        answeredWithoutPeer: Bool = false
    ) {
        self.current = current
        self.bitmap = bitmap
        self.history = Array((history + [0, 0]).prefix(2))
        self.consistency = consistency
        self.crashedPrimary = crashedPrimary
        self.answeredWithoutPeer = answeredWithoutPeer
    }
}

/// Which host's copy of a VM's disks is newer, seen from this host.
public enum DataRelation: String, Sendable, Hashable, CaseIterable, Codable {
    /// The same generation on both: either may run the VM.
    case same
    /// This host holds writes the peer lacks: it must be the one to run (and resync the peer).
    case localNewer
    /// The peer holds writes this host lacks: this copy is Outdated until resynced from the peer.
    case peerNewer
    /// Both wrote since they were last in sync, or the copies are unrelated: an operator decides.
    case diverged
}
