/// What the lead must do, in order, after a transition.
public enum ModuleAction: Sendable, Hashable, CustomStringConvertible {
    case startDomain
    case stopDomain
    /// Make the local volume writable (primary) for the NBD export.
    case promoteVolume
    case demoteVolume
    /// Promote the volume in place under the exports an incoming live migration's domain already
    /// uses, then answer the guest changes they held.
    case adoptMigratedDomain
    case startResync
    /// Freeze guest I/O at the NBD export immediately (no write reaches the disk afterwards).
    case suspendIO
    case requestWitnessVote
    case reportError(String)

    public var description: String {
        switch self {
        case .startDomain: "startDomain"
        case .stopDomain: "stopDomain"
        case .promoteVolume: "promoteVolume"
        case .demoteVolume: "demoteVolume"
        case .adoptMigratedDomain: "adoptMigratedDomain"
        case .startResync: "startResync"
        case .suspendIO: "suspendIO"
        case .requestWitnessVote: "requestWitnessVote"
        case .reportError(let message): "reportError(\"\(message)\")"
        }
    }
}
