/// One state change of a host's node, numbered in the order the node made them: the stream that
/// `vmha events` (and status, metrics, the console) read.
public struct NodeEvent: Sendable, Codable, Equatable {
    public enum Kind: Sendable, Codable, Equatable {
        /// A module transition: the event that caused it and the actions it asked for.
        case module(vm: String, from: ModuleStatus, to: ModuleStatus, event: String, actions: [String])
        /// An action of a transition failed.
        case actionFailed(vm: String, action: String, reason: String)
        case peer(state: PeerState)
        /// The witness vote: granted, denied, ran out.
        case lease(outcome: String)
        case fence(on: Bool)
        /// What primaries do with writes their peer misses.
        case writePolicy(String)
        /// A line for the operator (failover waves, failback, refusals, crashes…).
        case note(String)
    }

    public var sequence: UInt64
    /// The daemon's incarnation: sequences start again at 1 with each.
    public var incarnation: UInt64
    /// Wall-clock seconds since 1970, for display only (no decision reads it).
    public var time: Double
    public var kind: Kind

    public init(sequence: UInt64, incarnation: UInt64, time: Double, kind: Kind) {
        self.sequence = sequence
        self.incarnation = incarnation
        self.time = time
        self.kind = kind
    }
}

/// The node's recent events, bounded; a reader asks for those after the last sequence it saw.
public struct NodeEventLog: Sendable {
    public let incarnation: UInt64
    public let capacity: Int
    public private(set) var events: [NodeEvent] = []
    public private(set) var lastSequence: UInt64 = 0

    public init(incarnation: UInt64, capacity: Int = 2000) {
        self.incarnation = incarnation
        self.capacity = max(1, capacity)
    }

    @discardableResult
    public mutating func append(_ kind: NodeEvent.Kind, time: Double) -> NodeEvent {
        lastSequence += 1
        let event = NodeEvent(sequence: lastSequence, incarnation: incarnation, time: time, kind: kind)
        events.append(event)
        if events.count > capacity { events.removeFirst(events.count - capacity) }
        return event
    }

    /// The kept events after `sequence` (nil: all kept), oldest first, and whether some after it
    /// were already dropped (the reader fell more than `capacity` behind).
    public func since(_ sequence: UInt64?) -> (events: [NodeEvent], missed: Bool) {
        let after = sequence ?? 0
        let kept = events.filter { $0.sequence > after }
        let oldest = events.first?.sequence ?? lastSequence + 1
        return (kept, after < lastSequence && after + 1 < oldest)
    }
}
