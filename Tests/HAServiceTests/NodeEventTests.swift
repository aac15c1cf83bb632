import Cluster
import Crypto
import Foundation
import Replication
import Testing

@testable import HAService

/// The node publishes every state change as a numbered event (`vmha events` reads them).
@Suite("Node events", .serialized)
struct NodeEventTests {
    @Test(.timeLimit(.minutes(1))) func everyStateChangeIsANumberedEventInOrder() async throws {
        let (fixture, node, _) = try await NodeFixture.oneVMNode()
        defer { fixture.remove() }
        await node.feed(named: "vm01", .peerLost)
        await node.feed(named: "vm01", .witnessVoteGranted)  // starting the domain fails: no libvirt here
        let report = try #require(await node.handle(ControlRequest(command: "events")).events)
        #expect(report.events.map(\.sequence) == Array(1...report.lastSequence), "numbered from 1, none skipped")
        #expect(!report.missed)
        let kinds = report.events.map(\.kind)
        #expect(kinds.first == .module(vm: "vm01", from: ModuleStatus(.stop, .unknown), to: ModuleStatus(.wait, .unknown), event: "startRequested", actions: []))
        #expect(kinds.contains(.module(
            vm: "vm01", from: ModuleStatus(.wait, .upToDate), to: ModuleStatus(.alone, .upToDate), event: "witnessVoteGranted",
            actions: ["promoteVolume", "startDomain"])))
        #expect(kinds.last == .actionFailed(vm: "vm01", action: "startDomain", reason: "no libvirt connection"))
        #expect(Set(report.events.map(\.incarnation)) == [node.incarnation])

        let later = try #require(await node.handle(ControlRequest(command: "events", since: report.lastSequence - 1)).events)
        #expect(later.events.map(\.sequence) == [report.lastSequence])
        let status = try #require(await node.handle(ControlRequest(command: "status")).status)
        #expect(status.eventSequence == report.lastSequence, "status says which event it was read at")
        await node.stopAndShutDown()
    }

    /// A caller waiting on the node's state (switchover, migrate, `--force`) is woken by the
    /// change itself, not by a poll; with no change, its deadline ends the wait.
    @Test(.timeLimit(.minutes(1))) func aWaiterWakesOnTheChangeAndOtherwiseAtItsDeadline() async throws {
        let (fixture, node, _) = try await NodeFixture.oneVMNode()
        defer { fixture.remove() }
        let start = ContinuousClock.now
        async let woke = node.waitUntil(.now + .seconds(50)) { $0.modules["vm01"]?.status.state == .alone }
        try await Task.sleep(for: .milliseconds(200))
        await node.feed(named: "vm01", .peerLost)
        await node.feed(named: "vm01", .witnessVoteGranted)
        #expect(await woke)
        #expect(ContinuousClock.now - start < .seconds(30), "woken by the transition, long before the deadline")
        let quiet = ContinuousClock.now
        #expect(!(await node.waitUntil(.now + .milliseconds(300)) { $0.modules["vm01"]?.status.state == .second }))
        #expect(ContinuousClock.now - quiet >= .milliseconds(300))
        #expect(await node.changeWaiters.isEmpty, "no waiter or timer is left behind")
        await node.stopAndShutDown()
    }

    /// The control loop steps when something happens and when the policy's clock-derived inputs
    /// change (`HostPolicy.nextLook`: here the peer's detection timeout), not on a tick: before,
    /// it stepped every 100 ms whatever happened.
    @Test(.timeLimit(.minutes(1))) func theControlLoopStepsOnEventsAndDeadlinesNotOnATick() async throws {
        let created = ContinuousClock.now  // before the node: its detection starts later
        let (fixture, node, _) = try await NodeFixture.oneVMNode()
        defer { fixture.remove() }
        let loop = Task { await node.controlLoop() }
        try await Task.sleep(for: .seconds(1))
        let quiet = await node.controlSteps
        #expect(quiet >= 1 && quiet <= 3, "\(quiet) steps in a second with nothing happening")
        // Nothing is heard from hostB: the loop looks again when the detection timeout (3 s) ends.
        #expect(await node.waitUntil(.now + .seconds(10)) { $0.peerState == .lost })
        #expect(ContinuousClock.now - created >= .seconds(3))
        let afterLoss = await node.controlSteps
        // A heartbeat is an event: the loop steps on it and calls the peer up.
        let heartbeat = try Heartbeat(
            clusterName: "test", sender: "hostB", network: 0, incarnation: 5, sequence: 1, timestamp: MonotonicInstant(nanoseconds: 1),
            vms: [.init(name: "vm01", state: .second, replica: .upToDate)]
        ).encode(key: SymmetricKey(data: fixture.key))
        await node.datagram(heartbeat, network: 0, at: monotonicNow())
        #expect(await node.waitUntil(.now + .seconds(2)) { $0.peerState == .alive })
        #expect(await node.controlSteps > afterLoss)
        await node.stopLoopAndShutDown(loop)
    }

    /// A domain whose start failed is started again after a delay, as a crashed one is, and
    /// left down with the reason after the crash-restart limit: before, a passing libvirt
    /// failure left a running module without its domain until an operator acted (vmha-sim's
    /// libvirt start failures found it).
    @Test(.timeLimit(.minutes(1))) func aFailedDomainStartIsRetriedUpToTheCrashLimit() async throws {
        let (fixture, node, _) = try await NodeFixture.oneVMNode()
        defer { fixture.remove() }
        await node.setStartRetryDelay(.milliseconds(100))
        await node.feed(named: "vm01", .peerLost)
        await node.feed(named: "vm01", .witnessVoteGranted)  // no libvirt here: every start fails
        let loop = Task { await node.controlLoop() }
        let gaveUp = await node.waitUntil(.now + .seconds(20)) { $0.failoverLog.contains { $0.contains("not restarted again") } }
        #expect(gaveUp)
        let log = await node.failoverLog
        let restarts = log.filter { $0.contains("its start failed") && $0.contains("restarting its domain") }
        #expect(restarts.count == ClusterNode.maxCrashRestarts, "\(log)")
        #expect(await !node.startRetryPending("vm01"), "no retry after giving up")
        await node.stopLoopAndShutDown(loop)
    }

    /// The history is kept in the state directory: a restarted vmhad serves what the previous
    /// one published and numbers on; a torn line (a crash in the middle of a write) is skipped
    /// with a warning, not fatal.
    @Test(.timeLimit(.minutes(1))) func eventsSurviveARestartAndNumberOn() async throws {
        var (fixture, node, _) = try await NodeFixture.oneVMNode()
        defer { fixture.remove() }
        await node.feed(named: "vm01", .peerLost)
        let first = try #require(await node.handle(ControlRequest(command: "events")).events)
        #expect(!first.events.isEmpty)
        await node.stopAndShutDown()
        let file = "\(fixture.directory)/state/events.jsonl"
        let handle = try #require(FileHandle(forWritingAtPath: file))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(#"{"sequence":99,"kind":"#.utf8))
        try handle.close()

        let log = LogRecorder()
        fixture.logger = log.logger
        let again = try fixture.makeNode()
        try await again.openModules()
        let report = try #require(await again.handle(ControlRequest(command: "events")).events)
        #expect(Array(report.events.prefix(first.events.count)) == first.events, "the previous incarnation's events are served")
        let next = try #require(report.events.dropFirst(first.events.count).first)
        #expect(next.sequence == first.lastSequence + 1 && next.incarnation == again.incarnation, "numbered on after them")
        #expect(log.lines.contains { $0.contains("skipped lines that are not events") && $0.contains("lines=1") })
        await again.stopAndShutDown()
    }

    /// A history that cannot be written (here a directory where the file should be; a full disk
    /// does the same) costs the history, not the node: one warning, events still served.
    @Test(.timeLimit(.minutes(1))) func anUnwritableHistoryIsOneWarning() async throws {
        var fixture = try NodeFixture(vms: 1, preferredHost: { _ in "hostA" })
        defer { fixture.remove() }
        try FileManager.default.createDirectory(atPath: "\(fixture.directory)/state/events.jsonl", withIntermediateDirectories: true)
        let log = LogRecorder()
        fixture.logger = log.logger
        let node = try fixture.makeNode()
        try await node.openModules()
        await node.feed(named: "vm01", .peerLost)
        await node.feed(named: "vm01", .witnessVoteGranted)
        let report = try #require(await node.handle(ControlRequest(command: "events")).events)
        #expect(report.events.count >= 3)
        #expect(log.lines.filter { $0.contains("event history: cannot write") }.count == 1)
        await node.stopAndShutDown()
    }

    /// Link and resync changes become events in order, with the resync's own figures: its start
    /// (bytes to do), progress, its end (bytes resynced, seconds) — `vmha demo` reports these.
    @Test(.timeLimit(.minutes(1))) func linkAndResyncChangesAreEvents() async throws {
        let (fixture, node, _) = try await NodeFixture.oneVMNode()
        defer { fixture.remove() }
        let start = await node.eventLog.lastSequence
        var status = ReplicationStatus()
        for link in [ReplicationStatus.Link.connecting, .handshaking, .deciding, .syncSource] {
            status.link = link
            await node.linkChanged("vm01-disk0", status)
        }
        status.resyncsStarted = 1
        status.resyncTotalBytes = 1 << 20
        status.resyncMethod = "data"
        await node.linkChanged("vm01-disk0", status)
        status.link = .connected
        status.resyncsCompleted = 1
        status.resyncDoneBytes = 1 << 20
        status.resyncSentBytes = 4096
        status.resyncSeconds = 0.5
        await node.linkChanged("vm01-disk0", status)
        status.link = .splitBrain
        await node.linkChanged("vm01-disk0", status)
        let kinds = try #require(await node.handle(ControlRequest(command: "events", since: start)).events).events.map(\.kind)
        #expect(kinds == [
            .link(volume: "vm01-disk0", state: "connecting"), .link(volume: "vm01-disk0", state: "handshaking"),
            .link(volume: "vm01-disk0", state: "deciding"), .link(volume: "vm01-disk0", state: "syncSource"),
            .resyncStarted(volume: "vm01-disk0", totalBytes: 1 << 20, method: "data"),
            .link(volume: "vm01-disk0", state: "connected"),
            .resyncFinished(volume: "vm01-disk0", bytes: 1 << 20, sentBytes: 4096, seconds: 0.5),
            .link(volume: "vm01-disk0", state: "splitBrain"),
            .splitBrain(volume: "vm01-disk0", resolution: "not settled: the link waits for an operator (split_brain policy)"),
        ])
        await node.stopAndShutDown()
    }

    /// `vmha events` starts from the current state and then waits for the next event on the node
    /// (a long poll answered by the change), not on a reader's timer.
    @Test(.timeLimit(.minutes(1))) func aReaderGetsTheStateThenWaitsForTheNextEvent() async throws {
        let (fixture, node, _) = try await NodeFixture.oneVMNode()
        defer { fixture.remove() }
        let now = try #require(await node.handle(ControlRequest(command: "events", now: true)).events)
        #expect(now.events.contains { $0.kind == .exists(vm: "vm01", status: ModuleStatus(.wait, .upToDate), links: ["vm01-disk0": "standalone"]) })
        #expect(now.events.contains { $0.kind == .peer(state: .unknown) })
        let asked = ContinuousClock.now
        async let waited = node.handle(ControlRequest(command: "events", since: now.lastSequence, waitSeconds: 20))
        try await Task.sleep(for: .milliseconds(300))
        await node.record("something happened")
        let answer = try #require(await waited.events)
        #expect(answer.events.map(\.kind) == [.note("something happened")])
        #expect(ContinuousClock.now - asked < .seconds(10), "answered by the event, not at the wait's end")
        let quiet = ContinuousClock.now
        let none = try #require(await node.handle(ControlRequest(command: "events", since: answer.lastSequence, waitSeconds: 0.3)).events)
        #expect(none.events.isEmpty && ContinuousClock.now - quiet >= .milliseconds(300))
        await node.stopAndShutDown()
    }

    @Test func aReaderThatFellBehindIsTold() {
        var log = NodeEventLog(incarnation: 7, capacity: 3)
        for i in 1...5 { log.append(.note("n\(i)"), time: 0) }
        #expect(log.since(1).events.map(\.sequence) == [3, 4, 5])
        #expect(log.since(1).missed, "2 was dropped")
        #expect(!log.since(2).missed)
        let caughtUp = log.since(5)
        #expect(caughtUp.events.isEmpty && !caughtUp.missed)
        #expect(log.since(nil).events.count == 3)
    }
}
