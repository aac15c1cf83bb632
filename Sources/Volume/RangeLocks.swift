/// Byte ranges in use by writes (and resync reads), so overlapping operations run one after the
/// other in arrival order. That order is the order the peer sees on its single ordered stream,
/// so both replicas end with the same bytes, and a resync block read before a guest write can
/// never land on the peer after it.
struct RangeLocks {
    private struct Waiter {
        var lower: UInt64
        var upper: UInt64
        var continuation: CheckedContinuation<Void, Never>
    }

    private var held: [(lower: UInt64, upper: UInt64)] = []
    private var waiters: [Waiter] = []

    /// Takes the range now (returns true) or queues `continuation` to be resumed holding it.
    mutating func tryAcquire(_ lower: UInt64, _ upper: UInt64) -> Bool {
        if conflicts(lower, upper, waitersBefore: waiters.count) { return false }
        held.append((lower, upper))
        return true
    }

    mutating func enqueue(_ lower: UInt64, _ upper: UInt64, _ continuation: CheckedContinuation<Void, Never>) {
        waiters.append(Waiter(lower: lower, upper: upper, continuation: continuation))
    }

    /// Releases a range and returns the waiters that now hold theirs (resume them).
    mutating func release(_ lower: UInt64, _ upper: UInt64) -> [CheckedContinuation<Void, Never>] {
        if let index = held.firstIndex(where: { $0.lower == lower && $0.upper == upper }) { held.remove(at: index) }
        var granted: [CheckedContinuation<Void, Never>] = []
        var index = 0
        while index < waiters.count {
            let waiter = waiters[index]
            // Waiting behind an earlier overlapping waiter keeps arrival order among overlaps.
            if !conflicts(waiter.lower, waiter.upper, waitersBefore: index) {
                held.append((waiter.lower, waiter.upper))
                granted.append(waiter.continuation)
                waiters.remove(at: index)
            } else {
                index += 1
            }
        }
        return granted
    }

    private func conflicts(_ lower: UInt64, _ upper: UInt64, waitersBefore count: Int) -> Bool {
        held.contains { $0.lower < upper && lower < $0.upper }
            || waiters.prefix(count).contains { $0.lower < upper && lower < $0.upper }
    }
}
