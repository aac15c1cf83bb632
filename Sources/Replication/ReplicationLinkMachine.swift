/// The replication link of one volume, as a pure state machine: `transition(from:on:)` maps
/// (state, event) to (next state, actions) and never touches anything. `PrimaryReplication` (the
/// connector) and `ReplicaServer` (the acceptor) are its owners: each link change they make goes
/// through it, and the state is what `vmha status` shows as `link=`. The table in
/// docs/state-machine.md is generated from `markdownTable()` and checked by a test.
public enum ReplicationLinkMachine {
    public typealias State = ReplicationStatus.Link

    /// What the connect's resync decision (`SyncDecision`, split-brain policy) came to.
    public enum Decision: String, Sendable, CaseIterable, CustomStringConvertible {
        /// Same data: replicate from here on.
        case inSync
        /// This side copies its changes to the peer.
        case source
        /// This side receives the peer's changes (Inconsistent until done).
        case target
        /// Both changed since they were last in sync and no policy settled it: an operator decides.
        case splitBrain
        /// Not replicas of each other, geometry differs, the primary would be a target…
        case refused

        public var description: String { rawValue }
    }

    public enum Event: Sendable, Equatable, CustomStringConvertible {
        /// The primary begins (or, after the reconnect interval, retries) connecting.
        case start
        /// The TCP connection is up; the handshake (docs/protocol.md) runs.
        case tcpConnected
        /// Both sides proved the cluster key; VOLUME_STATEs are exchanged.
        case authenticated
        /// On the secondary: a primary offered this volume on an authenticated connection (it
        /// may replace an older connection of the same volume).
        case offered
        case decided(Decision)
        /// An operator's resync or verify, or changes the peer missed while attached.
        case resyncRequested
        case resyncDone
        /// The connection failed or timed out; the primary retries after the reconnect interval.
        case failed
        /// Replication stops (the volume changes role or closes, vmhad stops).
        case stopped

        public var description: String {
            switch self {
            case .start: "start"
            case .tcpConnected: "tcpConnected"
            case .authenticated: "authenticated"
            case .offered: "offered"
            case .decided(let d): "decided(\(d))"
            case .resyncRequested: "resyncRequested"
            case .resyncDone: "resyncDone"
            case .failed: "failed"
            case .stopped: "stopped"
            }
        }

        static var representatives: [Event] {
            [.start, .tcpConnected, .authenticated, .offered] + Decision.allCases.map(Event.decided)
                + [.resyncRequested, .resyncDone, .failed, .stopped]
        }
    }

    public enum Action: String, Sendable, CustomStringConvertible {
        case connect, authenticate, exchangeVolumeState
        /// Guest writes go to the peer too (protocol C).
        case attach
        /// Send the dirty grains (source side).
        case startResync
        /// The target marks itself Inconsistent durably before the first block.
        case markInconsistent
        /// RESYNC_DONE: the target is Consistent, the source's bitmap generation retires.
        case markConsistent
        /// Writes the peer misses from now on are tracked in the dirty bitmap.
        case trackChanges
        case reportSplitBrain, reportRefusal
        case close

        public var description: String { rawValue }
    }

    public struct TransitionError: Error, Sendable, Equatable, CustomStringConvertible {
        public var state: State
        public var event: Event
        public var reason: String
        public var description: String { "\(event) is illegal in link state \(state.rawValue): \(reason)" }
    }

    public static func transition(from state: State, on event: Event) throws(TransitionError) -> (state: State, actions: [Action]) {
        func illegal(_ reason: String) -> TransitionError { TransitionError(state: state, event: event, reason: reason) }
        let linked: Set<State> = [.handshaking, .deciding, .syncSource, .syncTarget, .connected]
        switch (state, event) {
        case (_, .stopped):
            return (.standalone, state == .standalone ? [] : [.close])
        case (.handshaking, .offered), (.connecting, .offered):
            throw illegal("a secondary's volume is offered only on an authenticated connection")
        case (_, .offered):
            // A new connection re-decides, replacing an older one (e.g. the primary restarted, or
            // an operator settled a split brain there).
            return (.deciding, linked.contains(state) ? [.close, .exchangeVolumeState] : [.exchangeVolumeState])
        case (.splitBrain, .failed):
            return (state, [])
        case (.splitBrain, _):
            throw illegal("split brain: replication stays down until an operator discards one side")
        case (.standalone, .start), (.refused, .start), (.connecting, .start):
            return (.connecting, [.connect])
        case (_, .start):
            throw illegal("already linked")
        case (.connecting, .tcpConnected):
            return (.handshaking, [.authenticate])
        case (_, .tcpConnected):
            throw illegal("not connecting")
        case (.handshaking, .authenticated):
            return (.deciding, [.exchangeVolumeState])
        case (_, .authenticated):
            throw illegal("no handshake running")
        case (.deciding, .decided(let decision)):
            switch decision {
            case .inSync: return (.connected, [.attach])
            case .source: return (.syncSource, [.attach, .startResync])
            case .target: return (.syncTarget, [.markInconsistent, .attach])
            case .splitBrain: return (.splitBrain, [.reportSplitBrain, .close])
            case .refused: return (.refused, [.reportRefusal, .close])
            }
        case (_, .decided):
            throw illegal("no VOLUME_STATE exchange running")
        case (.connected, .resyncRequested), (.syncSource, .resyncRequested):
            return (.syncSource, [.startResync])
        case (_, .resyncRequested):
            throw illegal("not attached as the source")
        case (.syncSource, .resyncDone), (.syncTarget, .resyncDone):
            return (.connected, [.markConsistent])
        case (.connected, .resyncDone):
            // On the secondary: the primary resynced grains only its own bitmap held (changes held
            // while we were away start no generation, so our decision was "in sync").
            return (.connected, [.markConsistent])
        case (_, .resyncDone):
            throw illegal("no resync running")
        case (.standalone, .failed), (.refused, .failed):
            return (state, [])
        case (_, .failed):
            return (.standalone, [.close, .trackChanges])
        }
    }

    public static func markdownTable() -> String {
        var lines = ["| state | event | next state | actions |", "|---|---|---|---|"]
        for state in State.allCases {
            for event in Event.representatives {
                let prefix = "| \(state.rawValue) | \(event) |"
                do {
                    let result = try transition(from: state, on: event)
                    let unchanged = result.state == state && result.actions.isEmpty
                    let actions = result.actions.isEmpty ? "—" : result.actions.map(\.description).joined(separator: ", ")
                    lines.append("\(prefix) \(unchanged ? "(no change)" : result.state.rawValue) | \(actions) |")
                } catch {
                    lines.append("\(prefix) **illegal** | \(error.reason) |")
                }
            }
        }
        return lines.joined(separator: "\n")
    }
}
