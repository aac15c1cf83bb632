#if canImport(Glibc)
import Glibc
#endif

/// This host's `CLOCK_MONOTONIC`: what heartbeats, peer liveness and the witness lease are
/// timed on (`Cluster.MonotonicInstant` holds its readings; the simulator supplies its own).
public enum MonotonicClock {
    /// Nanoseconds since an arbitrary point fixed at boot.
    public static func nanoseconds() -> Int64 {
        var ts = timespec()
        // Fails only for a bad clock id or pointer (EINVAL, EFAULT), neither possible here.
        _ = try? Syscall.call("clock_gettime") { clock_gettime(CLOCK_MONOTONIC, &ts) }
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }
}

extension Duration {
    /// The duration in seconds, as a `Double` (for rates and reports).
    public var seconds: Double {
        let (s, a) = components
        return Double(s) + Double(a) / 1e18
    }
}
