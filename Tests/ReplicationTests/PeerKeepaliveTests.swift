import Testing
@testable import Replication

@Suite struct PeerKeepaliveTests {
    let t0 = ContinuousClock.now

    @Test func pingsOnceAfterIntervalThenDeclaresDeathAtTimeout() {
        var k = PeerKeepalive(interval: .seconds(2), timeout: .seconds(6), now: t0)
        #expect(k.nextDeadline == t0 + .seconds(2))
        #expect(k.poll(now: t0 + .seconds(1)) == .idle)
        #expect(k.poll(now: t0 + .seconds(2)) == .sendPing)
        // Only one PING per silence period.
        #expect(k.poll(now: t0 + .seconds(3)) == .idle)
        #expect(k.nextDeadline == t0 + .seconds(6))
        #expect(k.poll(now: t0 + .seconds(6)) == .peerDead(silentFor: .seconds(6)))
    }

    @Test func anyReceivedFrameResetsTheTimers() {
        var k = PeerKeepalive(interval: .seconds(2), timeout: .seconds(6), now: t0)
        #expect(k.poll(now: t0 + .seconds(2)) == .sendPing)
        k.frameReceived(now: t0 + .seconds(3))  // the PONG
        #expect(k.nextDeadline == t0 + .seconds(5))
        #expect(k.poll(now: t0 + .seconds(4)) == .idle)
        #expect(k.poll(now: t0 + .seconds(5)) == .sendPing)
        #expect(k.poll(now: t0 + .milliseconds(8_999)) == .idle)
        #expect(k.poll(now: t0 + .seconds(9)) == .peerDead(silentFor: .seconds(6)))
    }

    @Test func busyLinkNeverPings() {
        var k = PeerKeepalive(interval: .seconds(1), timeout: .seconds(3), now: t0)
        for ms in stride(from: 0, through: 10_000, by: 500) {
            let now = t0 + .milliseconds(ms)
            k.frameReceived(now: now)
            #expect(k.poll(now: now) == .idle)
        }
    }

    @Test func staleReceiveTimestampDoesNotMoveTheClockBack() {
        var k = PeerKeepalive(interval: .seconds(1), timeout: .seconds(3), now: t0 + .seconds(5))
        k.frameReceived(now: t0)
        #expect(k.lastReceived == t0 + .seconds(5))
    }
}
