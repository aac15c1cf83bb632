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
        /// A line for the operator (failback, refusals, crashes…).
        case note(String)
        /// A volume's replication link changed state (`ReplicationStatus.Link`).
        case link(volume: String, state: String)
        /// This host started resyncing the peer's copy of the volume.
        case resyncStarted(volume: String, totalBytes: UInt64, method: String)
        /// About every 2 s while it runs; `etaSeconds` is nil until a rate is known.
        case resyncProgress(volume: String, doneBytes: UInt64, totalBytes: UInt64, bytesPerSecond: Double, etaSeconds: Double?)
        /// `bytes`: what the resync covered (the dirty bytes at its start); `sentBytes`: what
        /// crossed the link (holes travel as markers).
        case resyncFinished(volume: String, bytes: UInt64, sentBytes: UInt64, seconds: Double)
        /// A split brain the link found, and how it was settled (or that it waits for an operator).
        case splitBrain(volume: String, resolution: String)
        /// Heartbeats on one network started or stopped arriving.
        case network(index: Int, up: Bool)
        /// A failover wave started (`limits.concurrent_starts` VMs at most).
        case failoverWave(number: Int, vms: [String])
        /// A failover did not start the VM, and why.
        case notStarted(vm: String, reason: String)
        /// An operator's command (`vmha migrate`, `resync`, `add`, `remove`, `place`) and its outcome.
        case command(name: String, vm: String?, ok: Bool, detail: String)
        /// A VM check's health changed (``CheckMachine``): healthy, failing, failed, flapping…
        case check(vm: String, check: String, health: String, detail: String)
        /// What a failed check led to (``RecoveryPolicy``, ``Evacuation``): restart, move, gaveUp;
        /// evacuate (a host check moved it), stay (and why it could not).
        case recovery(vm: String, action: String, detail: String)
        /// A host check's health changed (`[[hosts.checks]]`).
        case hostCheck(host: String, check: String, health: String, detail: String)
        /// The state when a reader starts (`vmha events`, like `drbdsetup events2 --now`): one per VM.
        case exists(vm: String, status: ModuleStatus, links: [String: String])
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

extension NodeEvent.Kind {
    /// The case's name (`vmha_events_total`'s `kind` label).
    public var name: String {
        switch self {
        case .module: "module"
        case .actionFailed: "actionFailed"
        case .peer: "peer"
        case .lease: "lease"
        case .fence: "fence"
        case .writePolicy: "writePolicy"
        case .note: "note"
        case .link: "link"
        case .resyncStarted: "resyncStarted"
        case .resyncProgress: "resyncProgress"
        case .resyncFinished: "resyncFinished"
        case .splitBrain: "splitBrain"
        case .network: "network"
        case .failoverWave: "failoverWave"
        case .notStarted: "notStarted"
        case .command: "command"
        case .check: "check"
        case .recovery: "recovery"
        case .hostCheck: "hostCheck"
        case .exists: "exists"
        }
    }
}

/// The node's recent events, bounded; a reader asks for those after the last sequence it saw.
public struct NodeEventLog: Sendable {
    public let incarnation: UInt64
    public let capacity: Int
    public private(set) var events: [NodeEvent] = []
    public private(set) var lastSequence: UInt64 = 0

    /// - Parameter restoring: a previous incarnation's events (the persisted history): they are
    ///   kept, and sequence numbers go on after the last of them.
    public init(incarnation: UInt64, capacity: Int = 2000, restoring: [NodeEvent] = []) {
        self.incarnation = incarnation
        self.capacity = max(1, capacity)
        events = Array(restoring.suffix(self.capacity))
        lastSequence = restoring.last?.sequence ?? 0
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
