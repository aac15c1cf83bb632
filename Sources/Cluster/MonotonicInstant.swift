/// A reading of one machine's monotonic clock (CLOCK_MONOTONIC / `ContinuousClock`), as an offset
/// from an arbitrary origin.
///
/// Deliberately not a wall-clock time: the safety arguments never compare readings of two
/// different machines, only durations measured on one clock (see docs/witness.md).
public struct MonotonicInstant: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var nanoseconds: Int64

    public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }

    public static func milliseconds(_ value: Int64) -> MonotonicInstant { .init(nanoseconds: value * 1_000_000) }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.nanoseconds < rhs.nanoseconds }

    public static func + (lhs: Self, rhs: Duration) -> Self { .init(nanoseconds: lhs.nanoseconds + rhs.nanosecondsValue) }

    public static func - (lhs: Self, rhs: Duration) -> Self { .init(nanoseconds: lhs.nanoseconds - rhs.nanosecondsValue) }

    public static func - (lhs: Self, rhs: Self) -> Duration { .nanoseconds(lhs.nanoseconds - rhs.nanoseconds) }

    public var description: String { "\(Double(nanoseconds) / 1e6) ms" }
}

extension Duration {
    /// The duration in whole nanoseconds (truncated; our durations are far below the Int64 range).
    var nanosecondsValue: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
