/// Something that happened to one VM's module, as observed by the lead's I/O code.
public enum ModuleEvent: Sendable, Hashable, CustomStringConvertible {
    /// Operator or daemon start-up: take part for this VM.
    case startRequested
    case stopRequested
    /// Run the VM here now that the peer does not (switchover target, election winner, failback).
    case promoteRequested
    /// Hand the VM to the peer: clean shutdown here, then the peer is promoted.
    case switchoverRequested
    /// Source of a live migration: the domain now runs on the peer (libvirt reported success);
    /// this side's guest I/O ended when its QEMU inactivated its disks.
    case liveMigrationCompleted
    /// Target of a live migration: the source demoted after the domain arrived here; take the
    /// volumes over under the running domain.
    case liveMigrationArrived
    /// The heartbeat/replication handshake reported the peer's view of this VM.
    case peerConnected(peerRole: PeerRole, peerReplica: ReplicaState)
    /// No heartbeat from the peer on any network for the detection timeout.
    case peerLost
    case witnessVoteGranted
    case witnessVoteDenied
    /// The lease's suspend deadline passed without renewal (see `LeaseClient.suspendDeadline`).
    case leaseExpired
    case resyncStarted(ResyncRole)
    case resyncFinished
    /// An I/O error on the local image or metadata.
    case localVolumeFailed
    /// The domain died without being asked to (libvirt lifecycle event).
    case domainCrashed

    /// One event per distinct behaviour, for the documented transition table.
    public static let representatives: [ModuleEvent] =
        [.startRequested, .stopRequested, .promoteRequested, .switchoverRequested, .liveMigrationCompleted, .liveMigrationArrived]
        + PeerRole.allCases.flatMap { role in
            [ReplicaState.upToDate, .outdated].map { ModuleEvent.peerConnected(peerRole: role, peerReplica: $0) }
        }
        + [.peerLost, .witnessVoteGranted, .witnessVoteDenied, .leaseExpired]
        + ResyncRole.allCases.map { .resyncStarted($0) }
        + [.resyncFinished, .localVolumeFailed, .domainCrashed]

    public var description: String {
        switch self {
        case .startRequested: "startRequested"
        case .stopRequested: "stopRequested"
        case .promoteRequested: "promoteRequested"
        case .switchoverRequested: "switchoverRequested"
        case .liveMigrationCompleted: "liveMigrationCompleted"
        case .liveMigrationArrived: "liveMigrationArrived"
        case .peerConnected(let role, let replica): "peerConnected(\(role.rawValue), \(replica.rawValue))"
        case .peerLost: "peerLost"
        case .witnessVoteGranted: "witnessVoteGranted"
        case .witnessVoteDenied: "witnessVoteDenied"
        case .leaseExpired: "leaseExpired"
        case .resyncStarted(let role): "resyncStarted(\(role.rawValue))"
        case .resyncFinished: "resyncFinished"
        case .localVolumeFailed: "localVolumeFailed"
        case .domainCrashed: "domainCrashed"
        }
    }
}
