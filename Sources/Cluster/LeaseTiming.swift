/// The timing constants of the witness lease and of peer-loss fencing, and the arithmetic that
/// makes them safe under bounded clock drift (docs/witness.md derives every formula here).
///
/// Assumption: every clock involved is monotonic and its rate differs from real time by at most
/// ρ = `maxDriftPPM` / 10⁶, i.e. a local interval Δ corresponds to a real interval in
/// [Δ/(1+ρ), Δ/(1−ρ)]. No clock is ever compared with another machine's clock.
public struct LeaseTiming: Sendable, Equatable {
    /// L: how long the witness considers a grant valid, on the witness's clock.
    public var leaseDuration: Duration
    public var maxDriftPPM: Int
    /// S: worst case, on the holder's clock, from deciding to suspend to no guest write reaching disk.
    public var suspendLatency: Duration
    /// How often the holder renews (and how often heartbeats go out).
    public var renewInterval: Duration

    public init(leaseDuration: Duration, maxDriftPPM: Int, suspendLatency: Duration, renewInterval: Duration) {
        self.leaseDuration = leaseDuration
        self.maxDriftPPM = maxDriftPPM
        self.suspendLatency = suspendLatency
        self.renewInterval = renewInterval
    }

    /// L · (1−ρ)/(1+ρ), rounded down: the lease as the holder may count it on its own clock from the
    /// moment it *sent* the request. Real time of that span ≤ L/(1+ρ) ≤ real time of the witness's L.
    public var holderLeaseDuration: Duration {
        let ppm = Int64(maxDriftPPM)
        let nanos = leaseDuration.nanosecondsValue
        // Integer arithmetic in ppm so rounding is always towards "shorter" (the safe side).
        return .nanoseconds(nanos / (1_000_000 + ppm) * (1_000_000 - ppm))
    }

    /// Extra wait at the witness after a grant expires before another host may get it: 2ρL, rounded
    /// up, at least 1 ms. Not needed by the proof (the holder-side factor already covers drift); it
    /// absorbs an underestimated ρ on either side.
    public var witnessSafetyMargin: Duration {
        let nanos = leaseDuration.nanosecondsValue
        let margin = (nanos * 2 * Int64(maxDriftPPM) + 999_999) / 1_000_000
        return .nanoseconds(max(margin, 1_000_000))
    }

    /// F = D·(1−ρ)/(1+ρ) − S: how long a primary without a lease may go without an echo of its own
    /// heartbeat from the peer before it must begin suspending I/O, given that the peer declares it
    /// lost after D of silence and may then take over its VMs.
    public func fenceTimeout(detection: Duration) -> Duration {
        let ppm = Int64(maxDriftPPM)
        let scaled = detection.nanosecondsValue / (1_000_000 + ppm) * (1_000_000 - ppm)
        return .nanoseconds(scaled) - suspendLatency
    }

    /// Why this lease cannot work, or nil: the holder must be able to renew at least twice between
    /// getting a grant and having to suspend, or one lost renewal would stop its VMs.
    var lesseeWindowProblem: String? {
        let usable = holderLeaseDuration - suspendLatency
        if usable < renewInterval * 2 {
            return "\(ms(leaseDuration)) ms leaves \(ms(usable)) ms of primary I/O after clock drift (\(maxDriftPPM) ppm) and suspend latency (\(ms(suspendLatency)) ms), less than 2 heartbeat intervals (\(ms(renewInterval * 2)) ms)"
        }
        return nil
    }
}
