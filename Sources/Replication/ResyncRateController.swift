/// How fast a resync may go while the guest runs (issue 19): it yields to guest I/O, steering on
/// the guest's own write latency as vmhad measures it (the time from the guest's request to both
/// replicas' completion), in the spirit of DRBD's dynamic resync controller, which steers on the
/// resync's fill of the link instead. Pure: the resync feeds it one interval's figures at a time
/// and paces itself at ``rate``.
///
/// The rule, per interval (about 100 ms):
/// - no latency target: the cap is `maxRate` (nil: none, the link's speed);
/// - guest writes above the target on average: the cap halves (from what the resync did in the
///   interval, when there was none), never below `minRate`, so the resync always progresses;
/// - under half the target, or no guest write at all: the cap grows by half, up to `maxRate`;
///   with no `maxRate`, after 10 such intervals in a row (a second) it is lifted (nil), so an
///   idle guest's resync runs exactly as fast as without a controller;
/// - between half the target and the target: the cap holds.
public struct ResyncRateController: Sendable, Equatable {
    public struct Settings: Sendable, Equatable {
        /// Bytes per second the resync never exceeds (nil: none).
        public var maxRate: UInt64?
        /// Bytes per second the resync keeps even while the guest is slow.
        public var minRate: UInt64
        /// The guest's average write latency to keep (nil: no steering).
        public var latencyTarget: Duration?

        public init(maxRate: UInt64? = nil, minRate: UInt64 = 16 << 20, latencyTarget: Duration? = nil) {
            self.maxRate = maxRate
            self.minRate = minRate
            self.latencyTarget = latencyTarget
        }
    }

    public private(set) var settings: Settings
    /// The current cap in bytes per second (nil: none).
    public private(set) var rate: Double? = nil
    /// Intervals in a row with the guest well under its target (or idle).
    var calm = 0
    static let liftAfter = 10

    public init(settings: Settings) {
        self.settings = settings
        self.rate = settings.maxRate.map { Double($0) }
    }

    /// A new maximum (`vmha resync --rate`): a lower one applies at once.
    public mutating func setMaximum(_ maxRate: UInt64?) {
        settings.maxRate = maxRate
        if let cap = maxRate.map({ Double($0) }), rate.map({ $0 > cap }) ?? true { rate = cap }
    }

    /// One interval: the guest writes completed in it, their summed latency in seconds, and the
    /// resync's own rate in it. Returns the new cap.
    @discardableResult
    public mutating func observe(guestWrites: UInt64, guestWriteSeconds: Double, resyncBytesPerSecond: Double) -> Double? {
        let ceiling = settings.maxRate.map { Double($0) }
        guard let target = settings.latencyTarget else {
            rate = ceiling
            return rate
        }
        let floor = Double(settings.minRate)
        let targetSeconds = Double(target.components.seconds) + Double(target.components.attoseconds) * 1e-18
        if guestWrites > 0 {
            let latency = guestWriteSeconds / Double(guestWrites)
            if latency > targetSeconds {
                calm = 0
                let from = rate ?? max(resyncBytesPerSecond, floor)
                rate = max(floor, from / 2)
                return rate
            }
            if latency >= targetSeconds / 2 {
                calm = 0
                return rate
            }
        }
        guard let current = rate else { return nil }
        calm += 1
        if let ceiling {
            rate = min(ceiling, current * 1.5)
        } else {
            // Calm for `liftAfter` intervals in a row: no cap at all, as without a controller.
            rate = calm >= Self.liftAfter ? nil : current * 1.5
        }
        return rate
    }
}
