/// Is the peer alive, and on which networks? Fed with heartbeat arrivals, asked with `now`.
///
/// - The peer is *lost* when every network has been silent for the detection timeout D (one
///   working network is enough to keep it).
/// - Separately, this host must *fence* (suspend primary I/O it runs without a lease) when no
///   heartbeat has echoed one of its own timestamps for the fence timeout F: then the peer may
///   not hear us and may soon declare us lost and take over (docs/witness.md, rule 2).
public struct PeerLiveness: Sendable {
    public enum NetworkStatus: Sendable, Equatable {
        case up(lastHeard: MonotonicInstant)
        case silent(since: MonotonicInstant?)
    }

    public struct Status: Sendable, Equatable {
        public var peerAlive: Bool
        public var networks: [NetworkStatus]
        /// When the peer is (or will be) declared lost if nothing more arrives.
        public var lostAt: MonotonicInstant
        /// Whether a lease-less primary must have begun suspending I/O.
        public var mustFence: Bool
        public var fenceDeadline: MonotonicInstant
    }

    public let detectionTimeout: Duration
    public let fenceTimeout: Duration
    private let startedAt: MonotonicInstant
    private var lastHeard: [MonotonicInstant?]
    private var latestEcho: MonotonicInstant?
    /// The peer announced a graceful restart: not lost before this instant.
    private var restartingUntil: MonotonicInstant?

    /// - Parameter startedAt: silence counts from here until the first packet arrives.
    public init(networks: Int, detectionTimeout: Duration, fenceTimeout: Duration, startedAt: MonotonicInstant) {
        precondition(networks > 0, "at least one heartbeat network")
        self.detectionTimeout = detectionTimeout
        self.fenceTimeout = fenceTimeout
        self.startedAt = startedAt
        self.lastHeard = Array(repeating: nil, count: networks)
    }

    /// Records an authenticated heartbeat received at `time` (our clock) on `network`.
    /// `echoedTimestamp` is the echo of our own timestamp it carried, if for our incarnation.
    public mutating func received(on network: Int, at time: MonotonicInstant, echoedTimestamp: MonotonicInstant? = nil) {
        guard lastHeard.indices.contains(network) else { return }
        lastHeard[network] = max(lastHeard[network] ?? time, time)
        if let echoedTimestamp, echoedTimestamp <= time {  // an echo from the future is not ours to trust
            latestEcho = max(latestEcho ?? echoedTimestamp, echoedTimestamp)
        }
    }

    /// The peer's vmhad is stopping for a restart (its guests cannot write meanwhile): it is not
    /// declared lost before `time + grace`, unless ``peerRestarted()`` ends the grace first.
    /// Fencing is not affected: it depends on our echoes, which only a running peer returns.
    public mutating func peerRestarting(at time: MonotonicInstant, grace: Duration) {
        restartingUntil = time + grace
    }

    /// The peer's next incarnation was heard.
    public mutating func peerRestarted() {
        restartingUntil = nil
    }

    public func status(at now: MonotonicInstant) -> Status {
        let networks = lastHeard.map { heard -> NetworkStatus in
            if let heard, now - heard < detectionTimeout { return .up(lastHeard: heard) }
            return .silent(since: heard)
        }
        let latest = lastHeard.compactMap { $0 }.max() ?? startedAt
        let lostAt = max(latest + detectionTimeout, restartingUntil ?? latest)
        let fenceDeadline = (latestEcho ?? startedAt) + fenceTimeout
        return Status(
            peerAlive: now < lostAt, networks: networks, lostAt: lostAt, mustFence: now >= fenceDeadline,
            fenceDeadline: fenceDeadline)
    }
}
