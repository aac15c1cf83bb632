import Cluster
import Crypto
import Foundation
import ReplicationPolicy
import Sockets
import Testing

@testable import HAService

/// Issue 19: a node of 100 VMs heartbeats in datagrams below the MTU that together carry every
/// VM, hears a peer's split heartbeats whole, and says why it drops one it cannot use.
@Suite("Heartbeats at 100 VMs", .serialized)
struct HeartbeatScaleTests {
    @Test(.timeLimit(.minutes(2))) func aHundredVMsCrossInPartsAndABadDatagramIsLogged() async throws {
        var fixture = try NodeFixture(vms: 100, preferredHost: { $0 % 2 == 0 ? "hostA" : "hostB" })
        defer { fixture.remove() }
        let log = LogRecorder()
        fixture.logger = log.logger
        let configuration = try ClusterConfiguration.parse(try String(contentsOfFile: fixture.configPath, encoding: .utf8))
        let a = configuration.hosts[0].heartbeatAddresses[0], b = configuration.hosts[1].heartbeatAddresses[0]
        // The test is host B: it listens where the node sends.
        let peerSocket = try UDPSocket(bind: TCPSocket.Address("\(b.host):\(b.port)")!, receiveTimeoutMilliseconds: 2000)
        defer { peerSocket.close() }
        let node = try fixture.makeNode()
        try await node.openModules()
        try await node.openHeartbeatSockets()
        await node.sendHeartbeats()

        let key = SymmetricKey(data: fixture.key)
        var decoder = HeartbeatDecoder(key: key, clusterName: "test", localHost: "hostB")
        var names: [String] = []
        var sizes: [Int] = []
        while names.count < 100, let (bytes, _) = try peerSocket.receive(maximumLength: 65536) {
            sizes.append(bytes.count)
            names += try decoder.decode(bytes, receivedOn: 0).vms.map(\.name)
        }
        #expect(names == fixture.vmNames, "every VM once, in order: got \(names.count)")
        #expect(sizes.count > 1 && sizes.allSatisfy { $0 <= Heartbeat.maximumDatagram }, "datagram sizes \(sizes)")

        // B's 100 summaries, split the same way, reach the node whole.
        let volume = GenerationSummary(current: 9, bitmap: 0, history: [0, 0], consistency: .consistent, crashedPrimary: false)
        let summaries = fixture.vmNames.map { Heartbeat.VMSummary(name: $0, state: .second, replica: .upToDate, volumes: [volume]) }
        let parts = try Heartbeat.parts(
            clusterName: "test", sender: "hostB", network: 0, incarnation: 7, firstSequence: 1, timestamp: .milliseconds(1),
            vms: summaries, key: key)
        #expect(parts.count > 1)
        let target = TCPSocket.Address("\(a.host):\(a.port)")!
        for part in parts { peerSocket.send(part, to: target) }
        try await until("the node knows all 100 of B's VMs") { await node.peerSummaries.count == 100 }

        // A datagram cut short (a truncating middlebox) and one under a wrong key: dropped, and said.
        var cut = try Heartbeat.parts(
            clusterName: "test", sender: "hostB", network: 0, incarnation: 7, firstSequence: 100, timestamp: .milliseconds(2),
            vms: summaries, key: key)[0]
        cut.removeLast(40)
        peerSocket.send(cut, to: target)
        try await until("the cut datagram is logged") {
            log.lines.contains { $0.hasPrefix("warning heartbeat dropped") && $0.contains("HMAC") && $0.contains("network=0") }
        }
        #expect(await node.peerSummaries.count == 100)
        await node.stopAndShutDown()
    }
}
