/// The role of one VM's module on one host, in the spirit of SafeKit's mirror module.
public enum ModuleState: String, Sendable, CaseIterable, Codable {
    /// Module stopped: no domain, volume not exported, not replicating.
    case stop = "STOP"
    /// Started, role undecided: waits for the peer (to learn who runs the VM) or, after peer loss,
    /// for the witness's vote.
    case wait = "WAIT"
    /// Runs the VM; the peer is connected and receives every write.
    case prim = "PRIM"
    /// Holds the replica for a VM the peer runs (in sync or resyncing).
    case second = "SECOND"
    /// Runs the VM with the peer gone, on the witness's vote; writes are tracked in the dirty bitmap.
    case alone = "ALONE"
}

/// The state of this host's copy of a VM's disks (DRBD's disk states, reduced to what decides roles).
public enum ReplicaState: String, Sendable, CaseIterable, Codable {
    case upToDate
    /// A resync target that was interrupted, or a disk that failed: content unusable.
    case inconsistent
    /// Consistent but known to be older than the peer's.
    case outdated
    /// Up to date, sending a resync to the peer.
    case syncSource
    /// Receiving a resync: inconsistent until it ends.
    case syncTarget
    /// Not yet compared with the peer (e.g. after start, before the handshake).
    case unknown

    /// The one rule that protects data: only a replica known to be the newest may run the VM.
    public var canBePrimary: Bool { self == .upToDate || self == .syncSource }
}

/// What the peer told us about its module for this VM.
public enum PeerRole: String, Sendable, CaseIterable, Codable {
    case primary
    case secondary
    /// STOP or WAIT on the peer: it does not run the VM.
    case waiting
}

/// The direction of a resync seen from this host.
public enum ResyncRole: String, Sendable, CaseIterable, Codable {
    case source, target
}
