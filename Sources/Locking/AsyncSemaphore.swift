/// A counting semaphore for work in flight (requests of one connection, frames of one link).
/// Waiters are served in arrival order.
public final class AsyncSemaphore: Sendable {
    private struct State {
        var available: Int
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state: Locked<State>

    public init(_ limit: Int) { state = Locked(State(available: limit)) }

    /// Runs on the caller's executor (`nonisolated(nonsending)`): a waiter on the ring's thread,
    /// e.g. `SerializedSender` under `LocalVolume`, is not hopped off it.
    nonisolated(nonsending) public func acquire() async {
        let acquired = state.withLock { s -> Bool in
            guard s.available > 0 else { return false }
            s.available -= 1
            return true
        }
        if acquired { return }
        await withCheckedContinuation { continuation in
            let runNow = state.withLock { s -> Bool in
                if s.available > 0 {
                    s.available -= 1
                    return true
                }
                s.waiters.append(continuation)
                return false
            }
            if runNow { continuation.resume() }
        }
    }

    public func release() {
        let next = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if s.waiters.isEmpty {
                s.available += 1
                return nil
            }
            return s.waiters.removeFirst()  // the slot passes straight to the waiter
        }
        next?.resume()
    }
}
