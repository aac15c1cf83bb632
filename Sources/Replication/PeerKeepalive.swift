/// Keepalive timing of one peer link as a pure value, driven by the caller's clock.
///
/// Rules (DRBD's ping-int / ping-timeout, simplified):
/// - every frame received from the peer proves it alive (``frameReceived(now:)``);
/// - after `interval` without receiving anything, send one PING (the peer
///   answers PONG, which is a received frame);
/// - after `timeout` without receiving anything, the peer is dead: the caller
///   closes the connection (and the replication engine goes disconnected).
///
/// The caller calls ``poll(now:)`` at (or after) ``nextDeadline`` and on every
/// received frame; the type never reads a clock itself, so tests drive it with
/// synthetic instants.
public struct PeerKeepalive: Sendable, Hashable {
    public typealias Instant = ContinuousClock.Instant

    public enum Action: Sendable, Hashable {
        /// Nothing to do before ``PeerKeepalive/nextDeadline``.
        case idle
        /// Send a PING now.
        case sendPing
        /// Nothing received for `timeout`: drop the connection.
        case peerDead(silentFor: Duration)
    }

    public let interval: Duration
    public let timeout: Duration
    public private(set) var lastReceived: Instant
    /// When the outstanding PING was sent (one at a time), or `nil`.
    public private(set) var pingSentAt: Instant?

    /// - Parameters:
    ///   - interval: idle time after which a PING is sent (> 0).
    ///   - timeout: silence after which the peer is dead (> interval, so one
    ///     PING has the chance to be answered).
    ///   - now: connection start; counts as "just heard from the peer".
    public init(interval: Duration, timeout: Duration, now: Instant) {
        precondition(interval > .zero, "keepalive interval must be positive")
        precondition(timeout > interval, "keepalive timeout must exceed the interval")
        self.interval = interval
        self.timeout = timeout
        self.lastReceived = now
    }

    /// Any frame (data, ACK, PONG, PING) arrived from the peer.
    public mutating func frameReceived(now: Instant) {
        if now > lastReceived { lastReceived = now }
        pingSentAt = nil
    }

    /// When the caller should poll next at the latest.
    public var nextDeadline: Instant {
        pingSentAt == nil ? lastReceived + interval : lastReceived + timeout
    }

    /// What to do at `now`. Returns ``Action/sendPing`` at most once per silence
    /// period (a PING is considered sent when this returns it).
    public mutating func poll(now: Instant) -> Action {
        let silent = now - lastReceived
        if silent >= timeout { return .peerDead(silentFor: silent) }
        if silent >= interval && pingSentAt == nil {
            pingSentAt = now
            return .sendPing
        }
        return .idle
    }
}
