import Testing
@testable import Replication

/// The resync's rate controller on made-up intervals (issue 19): no clock, no link.
@Suite struct ResyncRateControllerTests {
    @Test func withoutATargetTheCapIsTheMaximum() {
        var c = ResyncRateController(settings: .init(maxRate: 100 << 20))
        #expect(c.rate == Double(100 << 20))
        #expect(c.observe(guestWrites: 100, guestWriteSeconds: 100, resyncBytesPerSecond: 1e8) == Double(100 << 20))
        var free = ResyncRateController(settings: .init())
        #expect(free.observe(guestWrites: 10, guestWriteSeconds: 10, resyncBytesPerSecond: 1e9) == nil)
    }

    @Test func aSlowGuestHalvesTheRateDownToTheFloorAndAnIdleOneLiftsTheCap() {
        var c = ResyncRateController(settings: .init(minRate: 10 << 20, latencyTarget: .milliseconds(5)))
        #expect(c.rate == nil, "no cap until the guest suffers")
        // 10 ms average against a 5 ms target, while the resync did 800 MB/s: cap 400 MB/s.
        #expect(c.observe(guestWrites: 10, guestWriteSeconds: 0.1, resyncBytesPerSecond: 800e6) == 400e6)
        #expect(c.observe(guestWrites: 10, guestWriteSeconds: 0.1, resyncBytesPerSecond: 400e6) == 200e6)
        for _ in 0..<10 { c.observe(guestWrites: 10, guestWriteSeconds: 0.1, resyncBytesPerSecond: 1e6) }
        #expect(c.rate == Double(10 << 20), "never below the floor")
        // Between half the target and the target: hold.
        #expect(c.observe(guestWrites: 10, guestWriteSeconds: 0.04, resyncBytesPerSecond: 10e6) == Double(10 << 20))
        // Well under the target: grow by half.
        #expect(c.observe(guestWrites: 10, guestWriteSeconds: 0.01, resyncBytesPerSecond: 10e6) == Double(15 << 20))
        // An idle guest: it keeps growing and, far above what the resync achieves, the cap goes.
        var steps = 0
        while c.rate != nil && steps < 20 {
            c.observe(guestWrites: 0, guestWriteSeconds: 0, resyncBytesPerSecond: c.rate ?? 0)
            steps += 1
        }
        #expect(c.rate == nil && steps < 20)
    }

    @Test func aMaximumBoundsGrowthAndAChangedMaximumAppliesAtOnce() {
        var c = ResyncRateController(settings: .init(maxRate: 100 << 20, minRate: 1 << 20, latencyTarget: .milliseconds(2)))
        c.observe(guestWrites: 5, guestWriteSeconds: 0.05, resyncBytesPerSecond: 100e6)
        #expect(c.rate == Double(50 << 20))
        for _ in 0..<10 { c.observe(guestWrites: 0, guestWriteSeconds: 0, resyncBytesPerSecond: 50e6) }
        #expect(c.rate == Double(100 << 20), "idle: back to the maximum, not beyond")
        c.setMaximum(20 << 20)
        #expect(c.rate == Double(20 << 20), "vmha resync --rate lowers a running resync's cap at once")
    }
}
