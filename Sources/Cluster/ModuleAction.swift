/// What the lead must do, in order, after a transition.
public enum ModuleAction: Sendable, Hashable, CustomStringConvertible {
    case startDomain
    case stopDomain
    /// Make the local volume writable (primary) for the NBD export.
    case promoteVolume
    case demoteVolume
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
        case .startResync: "startResync"
        case .suspendIO: "suspendIO"
        case .requestWitnessVote: "requestWitnessVote"
        case .reportError(let message): "reportError(\"\(message)\")"
        }
    }
}
