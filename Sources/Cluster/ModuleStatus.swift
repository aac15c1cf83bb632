/// One VM's module on one host: its role and the state of its local replica, side by side.
public struct ModuleStatus: Sendable, Hashable, Codable, CustomStringConvertible {
    public var state: ModuleState
    public var replica: ReplicaState

    public init(_ state: ModuleState, _ replica: ReplicaState) {
        self.state = state
        self.replica = replica
    }

    /// The combinations the machine can be in. PRIM and ALONE only with a replica that may be
    /// primary; ALONE never resyncs (no peer); SECOND is never a sync source (the primary is newer).
    public var isValid: Bool {
        switch state {
        case .stop, .wait: true
        case .prim: replica.canBePrimary
        case .alone: replica == .upToDate
        case .second: replica != .syncSource
        }
    }

    public static let allValid: [ModuleStatus] = ModuleState.allCases.flatMap { state in
        ReplicaState.allCases.map { ModuleStatus(state, $0) }
    }.filter(\.isValid)

    public var description: String { "\(state.rawValue)/\(replica.rawValue)" }
}

/// The outcome of a legal event.
public struct ModuleTransition: Sendable, Hashable {
    public var status: ModuleStatus
    public var actions: [ModuleAction]

    public init(_ status: ModuleStatus, _ actions: [ModuleAction] = []) {
        self.status = status
        self.actions = actions
    }
}
