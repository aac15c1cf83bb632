import Cluster
import Crypto
import Foundation
import Locking
import Logging
import Testing
import Uring

@testable import HAService

/// Every refusal or failure an operator can get carries its reason, in the reply and in the log.
@Suite("Refusals carry their reason", .serialized)
struct RefusalReasonTests {
    /// Seen once in CI as a bare "vmha: switchover failed", with nothing in either log: the
    /// state machine refused the switchover (a resync toward the peer had started after the
    /// up-to-date check) and the node dropped the machine's reason.
    @Test(.timeLimit(.minutes(1))) func aRefusedSwitchoverSaysWhy() async throws {
        let (fixture, node, log) = try await NodeFixture.oneVMNode()
        defer { fixture.remove() }
        // The peer reports an up-to-date secondary, but a resync toward it has just started here.
        await node.pretend(vm: "vm01", status: ModuleStatus(.prim, .syncSource), peer: .init(name: "vm01", state: .second, replica: .upToDate))
        let problem = try #require(await node.switchoverProblem("vm01"))
        #expect(problem.contains("resync running: the peer's replica is not up to date yet"), "reply: \(problem)")
        #expect(await node.moduleState("vm01") == ModuleStatus(.prim, .syncSource), "a refused switchover changes nothing")
        await node.stopAndShutDown()
    }

    @Test(.timeLimit(.minutes(1))) func aRefusedControlRequestIsLoggedWithTheReplysReason() async throws {
        let (fixture, node, log) = try await NodeFixture.oneVMNode()
        defer { fixture.remove() }
        let cases: [(ControlRequest, String)] = [
            (ControlRequest(command: "migrate", vm: "vm01", to: "hostB"), "vm01 is WAIT here; nothing to hand over"),
            (ControlRequest(command: "migrate", vm: "vm01", to: "hostA"), "peer hostB is not reachable"),
            (ControlRequest(command: "migrate", vm: "nope", to: "hostB"), "no such VM: nope"),
            (ControlRequest(command: "resync", vm: "vm01"), "vm01 is not primary on hostA"),
            (ControlRequest(command: "frobnicate"), "unknown command frobnicate"),
        ]
        for (request, reason) in cases {
            let response = await node.handle(request)
            #expect(!response.ok)
            #expect(response.error?.contains(reason) == true, "\(request.command): \(response.error ?? "no error")")
            #expect(
                log.lines.contains { $0.contains("control request refused") && $0.contains(reason) },
                "\(request.command): the log does not give the reason \"\(reason)\"")
        }
        await node.stopAndShutDown()
    }
}

extension NodeFixture {
    /// One VM preferring this host, its node's modules open, its log recorded.
    static func oneVMNode() async throws -> (NodeFixture, ClusterNode, LogRecorder) {
        var fixture = try NodeFixture(vms: 1, preferredHost: { _ in "hostA" })
        let log = LogRecorder()
        fixture.logger = log.logger
        do {
            let node = try fixture.makeNode()
            try await node.openModules()
            return (fixture, node, log)
        } catch {
            fixture.remove()
            throw error
        }
    }
}

extension ClusterNode {
    func stopAndShutDown() async {
        await stop()
        await ring.shutdown()
    }

    /// Ends a `controlLoop` task a test started, then the node.
    func stopLoopAndShutDown(_ loop: Task<Void, Never>) async {
        beginStopping()
        stateChanged()
        await loop.value
        await stopAndShutDown()
    }

    /// Puts a module where a race would have it (tests only).
    func pretend(vm: String, status: ModuleStatus, peer summary: Heartbeat.VMSummary) {
        modules[vm]!.status = status
        peerState = .alive
        peerSummaries[vm] = summary
    }

    func switchoverProblem(_ vm: String) async -> String? { await switchover(modules[vm]!) }

    func moduleState(_ vm: String) -> ModuleStatus? { modules[vm]?.status }

    func setStartRetryDelay(_ delay: Duration) { startRetryDelay = delay }

    func startRetryPending(_ vm: String) -> Bool { modules[vm]?.startRetryAt != nil }
}

/// Collects what a logger is given, message and metadata, one line per record.
final class LogRecorder: Sendable {
    private let box = Locked<[String]>([])
    var lines: [String] { box.withLock { $0 } }

    var logger: Logger {
        let box = self.box
        return Logger(label: "test") { _ in Handler(box: box) }
    }

    struct Handler: LogHandler {
        let box: Locked<[String]>
        var logLevel: Logger.Level = .debug
        var metadata: Logger.Metadata = [:]
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let fields = (event.metadata ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            box.withLock { $0.append("\(event.level) \(event.message) \(fields)") }
        }
    }
}

@Suite("Peer commands are acted on once", .serialized)
struct PeerCommandReplayTests {
    /// A captured `promote` played again after the VM moved away must not start it again here:
    /// before replay protection, any authentic datagram was acted on each time it arrived.
    @Test(.timeLimit(.minutes(1))) func aReplayedPromoteIsDropped() async throws {
        let (fixture, node, log) = try await NodeFixture.oneVMNode()
        defer { fixture.remove() }
        let peerIncarnation: UInt64 = 1_000
        let heartbeat = try Heartbeat(
            clusterName: "test", sender: "hostB", network: 0, incarnation: peerIncarnation, sequence: 1, timestamp: MonotonicInstant(nanoseconds: 1),
            vms: [.init(name: "vm01", state: .second, replica: .upToDate)]
        ).encode(key: SymmetricKey(data: fixture.key))
        let promote = PeerCommand(kind: .promote, sender: "hostB", target: "hostA", vm: "vm01", incarnation: peerIncarnation, sequence: 1)
            .encode(key: fixture.key)

        await node.datagram(promote, network: 0, at: MonotonicInstant(nanoseconds: 2))
        await node.runQueuedJobs()
        #expect(await node.moduleState("vm01")?.state == .wait, "no command is admitted before a heartbeat names the peer's incarnation")
        await node.datagram(heartbeat, network: 0, at: MonotonicInstant(nanoseconds: 3))
        await node.datagram(promote, network: 0, at: MonotonicInstant(nanoseconds: 4))
        await node.runQueuedJobs()
        #expect(await node.moduleState("vm01")?.state == .prim, "the first copy is acted on")
        // The VM is handed back to the peer (a switchover from here).
        await node.feed(named: "vm01", .switchoverRequested)
        #expect(await node.moduleState("vm01")?.state == .second)
        await node.datagram(promote, network: 0, at: MonotonicInstant(nanoseconds: 5))
        await node.runQueuedJobs()
        #expect(await node.moduleState("vm01")?.state == .second, "the replayed promote was acted on")
        #expect(log.lines.contains { $0.contains("peer command dropped") && $0.contains("replayed") })
        await node.stopAndShutDown()
    }
}
