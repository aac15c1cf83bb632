import Locking

/// A change to a volume, as sent to the peer.
public enum ReplicatedChange {
    case write(offset: UInt64, data: UnsafeRawBufferPointer, fua: Bool)
    case trim(offset: UInt64, length: UInt64)
    case writeZeroes(offset: UInt64, length: UInt64, allocate: Bool)
    case flush
}

/// The volume's view of its peer link (protocol C): a change is handed over synchronously, in the
/// order the volume admitted it, and the returned ticket says whether the peer applied it.
public protocol WriteReplicator: Sendable {
    /// Queues `change` for the peer (copying any data now) or returns nil when not replicating.
    func submit(_ change: ReplicatedChange) -> ReplicationTicket?
}

/// Completion of one replicated change: true when the peer acknowledged it, false when the link
/// failed or timed out first (the change then only exists locally and its range becomes dirty).
public final class ReplicationTicket: Sendable {
    private struct State {
        var result: Bool?
        var status: UInt32?
        var answeredAt: ContinuousClock.Instant?
        var waiters: [CheckedContinuation<Bool, Never>] = []
    }

    private let state = Locked(State())
    private let submittedAt = ContinuousClock.now

    public init() {}

    /// From submission to the peer's acknowledgement (`vmha_volume_peer_ack_latency_seconds`);
    /// nil unless it was acknowledged.
    public var latency: Duration? {
        state.withLock { $0.result == true ? $0.answeredAt.map { submittedAt.duration(to: $0) } : nil }
    }

    /// `status` is the peer's answer when it answered (0: done; otherwise an errno or a
    /// protocol-defined code), nil when the link failed first.
    public func resolve(_ acknowledged: Bool, status: UInt32? = nil) {
        let waiters = state.withLock { s -> [CheckedContinuation<Bool, Never>] in
            guard s.result == nil else { return [] }
            s.result = acknowledged
            s.answeredAt = .now
            s.status = status
            defer { s.waiters = [] }
            return s.waiters
        }
        for waiter in waiters { waiter.resume(returning: acknowledged) }
    }

    /// Waits, then returns the peer's status (nil: no answer, the link failed).
    public func status() async -> UInt32? {
        _ = await wait()
        return state.withLock { $0.status }
    }

    public func wait() async -> Bool {
        if let result = state.withLock({ $0.result }) { return result }
        return await withCheckedContinuation { continuation in
            let result = state.withLock { s -> Bool? in
                if let result = s.result { return result }
                s.waiters.append(continuation)
                return nil
            }
            if let result { continuation.resume(returning: result) }
        }
    }
}
