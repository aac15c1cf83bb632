import Foundation
import Harness
import ReplicationPolicy
import Testing

/// Split brains settled (or deliberately not) by `--split-brain` policies, between two real vmhad
/// processes in two network namespaces.
@Suite("Split-brain policies", .serialized)
struct SplitBrainPolicyTests {
    /// A split brain of a 64 MiB volume: A changed `aKiB` KiB at 8 MiB, B `bKiB` KiB at 1 MiB.
    static func splitBrain(aKiB: Int, bKiB: Int) async throws -> TwoHostFixture {
        let hosts = try TwoHostFixture(sizeMiB: 64)
        try await hosts.makeSplitBrain(onA: "write -P 0xaa 8M \(aKiB)k", onB: "write -P 0xbb 1M \(bKiB)k")
        return hosts
    }

    @Test(arguments: ["discard-least-changes", "discard-younger-primary"])
    func thePolicyDiscardsTheSecondarysChangesWithAnIncrementalResync(policy: String) async throws {
        // B changed one 64 KiB grain and was promoted after the split; A changed 1 MiB.
        let hosts = try await Self.splitBrain(aKiB: 1024, bKiB: 64)
        let primaryBefore = try hosts.sha256(hosts.imageA)
        #expect(try hosts.sha256(hosts.imageB) != primaryBefore)

        let replica = try hosts.startReplica(extra: ["--split-brain", policy])
        let primary = try hosts.startPrimary(extra: ["--split-brain", policy])
        try await primary.waitForLog("resync finished")
        let resolved = try #require(primary.lines(containing: "split brain resolved: discarding the peer's changes").first)
        #expect(logField(resolved, "discarded_bytes") == "\(64 << 10)")
        #expect(logField(resolved, "rule") == policy)
        #expect(logField(resolved, "resync") == "incremental")
        let victim = try #require(replica.lines(containing: "split brain resolved: discarding this host's changes").first)
        #expect(logField(victim, "discarded_bytes") == "\(64 << 10)")

        // Only the union of both sides' changes crosses: A's 1 MiB and B's 64 KiB, not 64 MiB.
        let finished = try #require(primary.lines(containing: "resync finished").last)
        #expect(logField(finished, "bytes") == "\((1 << 20) + (64 << 10))")
        #expect(primary.lines(containing: "split brain: ").isEmpty)

        for daemon in hosts.daemons { await daemon.stop() }
        #expect(try hosts.sha256(hosts.imageA) == primaryBefore, "the running primary's data is never touched")
        #expect(try hosts.sha256(hosts.imageB) == primaryBefore)
    }

    /// B was promoted after the split but answered no write (vmha-sim: a switchover target that
    /// crashed before its link attached, while A took over): it holds nothing acknowledged, so
    /// even the default policy (disconnect) resyncs it from A, incrementally.
    @Test func aSecondaryThatAnsweredNothingAloneIsResyncedWhateverThePolicy() async throws {
        let hosts = try TwoHostFixture(sizeMiB: 64)
        try await hosts.makeSplitBrain(onA: "write -P 0xaa 8M 1M", onB: nil)
        let primaryBefore = try hosts.sha256(hosts.imageA)
        #expect(try hosts.sha256(hosts.imageB) != primaryBefore)

        let replica = try hosts.startReplica()
        let primary = try hosts.startPrimary()
        try await primary.waitForLog("resync finished")
        let resolved = try #require(primary.lines(containing: "split brain resolved: discarding the peer's changes").first)
        #expect(logField(resolved, "rule") == "unanswered-changes")
        #expect(logField(resolved, "resync") == "incremental")
        #expect(try #require(replica.lines(containing: "split brain resolved: discarding this host's changes").first).contains("rule=unanswered-changes"))
        let finished = try #require(primary.lines(containing: "resync finished").last)
        #expect(logField(finished, "bytes") == "\(1 << 20)")
        for daemon in hosts.daemons { await daemon.stop() }
        #expect(try hosts.sha256(hosts.imageB) == primaryBefore)
    }

    @Test func aResolutionBrokenByTheVictimsCrashStillEndsWithItsChangesDiscarded() async throws {
        // The younger primary B changed 32 MiB: it is the victim even though it changed more.
        let hosts = try await Self.splitBrain(aKiB: 64, bKiB: 32 << 10)
        let primaryBefore = try hosts.sha256(hosts.imageA)
        let policy = ["--split-brain", "discard-younger-primary"]
        let replica = try hosts.startReplica(extra: policy)
        // 8 MiB/s: the 32 MiB resync takes about 4 s; the victim dies in the middle of it.
        let primary = try hosts.startPrimary(extra: policy + ["--resync-max-rate", "\(8 << 20)"])
        try await primary.waitForLog("resync started")
        try await Task.sleep(for: .milliseconds(1500))
        await replica.stop(SIGKILL)
        try await primary.waitForLog("peer link down")

        // Back as an Inconsistent target of the same primary: its bitmap still names every
        // grain it changed, so the second resync covers them again.
        let returned = try hosts.startReplica(extra: policy)
        try await primary.waitForLog("resync finished")
        #expect(returned.lines(containing: "split brain resolved").isEmpty, "the second connect is an ordinary resync")
        #expect(primary.lines(containing: "resync started").count == 2)
        for daemon in hosts.daemons { await daemon.stop() }
        #expect(try hosts.sha256(hosts.imageA) == primaryBefore)
        #expect(try hosts.sha256(hosts.imageB) == primaryBefore)
    }

    @Test func aPolicyThatPicksTheRunningPrimaryIsReportedAndChangesNothing() async throws {
        // B (now the secondary) changed 1 MiB, A (the primary) 64 KiB: least-changes picks A.
        let hosts = try await Self.splitBrain(aKiB: 64, bKiB: 1024)
        let a = try hosts.sha256(hosts.imageA), b = try hosts.sha256(hosts.imageB)

        let replica = try hosts.startReplica(extra: ["--split-brain", "discard-least-changes"])
        let primary = try hosts.startPrimary(extra: ["--split-brain", "discard-least-changes"])
        try await primary.waitForLog("replication: split brain: ")
        let report = try #require(primary.lines(containing: "replication: split brain: ").first)
        #expect(report.contains("discard-least-changes chose to discard the changes of the running primary"), "\(report)")
        try await Task.sleep(for: .milliseconds(1500))  // a retry would show up by now (1 s interval)
        for daemon in hosts.daemons { await daemon.stop() }

        #expect(primary.lines(containing: "replication: split brain: ").count == 1, "a split brain is never retried")
        #expect(primary.lines(containing: "resync started").isEmpty)
        #expect(primary.lines(containing: "split brain resolved").isEmpty && replica.lines(containing: "split brain resolved").isEmpty)
        #expect(try hosts.sha256(hosts.imageA) == a)
        #expect(try hosts.sha256(hosts.imageB) == b)
    }

    @Test func hostsWithDifferentPoliciesNeverResolve() async throws {
        let hosts = try await Self.splitBrain(aKiB: 1024, bKiB: 64)
        let b = try hosts.sha256(hosts.imageB)
        _ = try hosts.startReplica(extra: ["--split-brain", "disconnect"])
        let primary = try hosts.startPrimary(extra: ["--split-brain", "discard-least-changes"])
        try await primary.waitForLog("replication: split brain: ")
        let report = try #require(primary.lines(containing: "replication: split brain: ").first)
        #expect(report.contains("policies differ (discard-least-changes here, disconnect on the peer)"), "\(report)")
        for daemon in hosts.daemons { await daemon.stop() }
        #expect(try hosts.sha256(hosts.imageB) == b)
    }
}
