import Crypto
import Testing
@testable import Cluster
import ReplicationPolicy

@Suite struct HeartbeatTests {
    let key = SymmetricKey(data: Array(repeating: UInt8(7), count: 32))

    func packet(sequence: UInt64 = 1, incarnation: UInt64 = 5, network: Int = 0, cluster: String = "c1", sender: String = "hostA") -> Heartbeat {
        Heartbeat(
            clusterName: cluster, sender: sender, network: network, incarnation: incarnation, sequence: sequence,
            timestamp: .milliseconds(1234), echo: (3, .milliseconds(1200)),
            vms: (0..<25).map {
                Heartbeat.VMSummary(
                    name: "vm\($0)", state: ModuleState.allCases[$0 % 5], replica: ReplicaState.allCases[$0 % 6],
                    volumes: [
                        GenerationSummary(
                            current: UInt64($0) << 40 | 0xABCD, bitmap: UInt64($0), history: [7, UInt64.max],
                            consistency: GenerationSummary.Consistency.allCases[$0 % 3], crashedPrimary: $0 % 2 == 0)
                    ])
            },
            capacity: Resources(vcpus: 64, memoryMiB: 512 * 1024), restartGrace: .seconds(30))
    }

    func decoder() -> HeartbeatDecoder { HeartbeatDecoder(key: key, clusterName: "c1", localHost: "hostB") }

    @Test func roundTripWithTwentyFiveVMs() throws {
        let original = packet()
        let bytes = try original.encode(key: key)
        #expect(bytes.count < 1400)  // one unfragmented UDP datagram
        var decoder = decoder()
        #expect(try decoder.decode(bytes, receivedOn: 0) == original)
    }

    /// A heartbeat as versions 1 and 2 wrote it, field by field (docs in `Heartbeat`).
    func legacy(_ heartbeat: Heartbeat, version: UInt8) -> [UInt8] {
        var bytes = Heartbeat.magic + [version, UInt8(heartbeat.network)]
        func string(_ s: String) { bytes += [UInt8(s.utf8.count)] + Array(s.utf8) }
        func integer<T: FixedWidthInteger>(_ value: T) { for shift in stride(from: T.bitWidth - 8, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: value >> shift)) } }
        string(heartbeat.clusterName)
        string(heartbeat.sender)
        for value in [heartbeat.incarnation, heartbeat.sequence, UInt64(heartbeat.timestamp.nanoseconds), heartbeat.echo!.incarnation, UInt64(heartbeat.echo!.timestamp.nanoseconds)] {
            integer(value)
        }
        if version == 2 {
            integer(UInt32(heartbeat.capacity!.vcpus))
            integer(UInt32(heartbeat.capacity!.memoryMiB))
            integer(UInt32(heartbeat.restartGrace!.components.seconds * 1000))
        }
        integer(UInt16(heartbeat.vms.count))
        for vm in heartbeat.vms {
            string(vm.name)
            bytes += [UInt8(ModuleState.allCases.firstIndex(of: vm.state)!), UInt8(ReplicaState.allCases.firstIndex(of: vm.replica)!)]
        }
        return bytes + HMAC<SHA256>.authenticationCode(for: bytes, using: key)
    }

    /// Versions 1 (no capacity, no grace) and 2 (no generations) from a host not yet upgraded are
    /// still understood; what they lack is absent, not guessed.
    @Test func olderVersionsAreAccepted() throws {
        for version: UInt8 in [1, 2] {
            var decoder = decoder()
            let decoded = try decoder.decode(legacy(packet(), version: version), receivedOn: 0)
            var expected = packet()
            for index in expected.vms.indices { expected.vms[index].volumes = [] }
            if version == 1 {
                expected.capacity = nil
                expected.restartGrace = nil
            }
            #expect(decoded == expected, "version \(version)")
        }
        #expect(try packet().encode(key: key)[4] == 3)
    }

    /// A volume's flags byte with bits beyond consistency and crashed-primary is refused by name.
    @Test func unknownGenerationFlagsAreRefused() throws {
        var one = packet()
        one.vms = [one.vms[0]]
        var bytes = Array(try one.encode(key: key).dropLast(32))
        bytes[bytes.count - 1] |= 0x80
        bytes += HMAC<SHA256>.authenticationCode(for: bytes, using: key)
        var decoder = decoder()
        #expect(throws: HeartbeatError.malformed("VM vm0 volume 0: flags 132")) { try decoder.decode(bytes, receivedOn: 0) }
    }

    @Test func wrongKeyIsRejected() throws {
        let bytes = try packet().encode(key: SymmetricKey(data: Array(repeating: UInt8(8), count: 32)))
        var decoder = decoder()
        #expect(throws: HeartbeatError.authenticationFailed) { try decoder.decode(bytes, receivedOn: 0) }
    }

    @Test func everyFlippedBitIsRejected() throws {
        let bytes = try packet().encode(key: key)
        for index in bytes.indices {
            var altered = bytes
            altered[index] ^= 0x01
            var decoder = decoder()
            #expect(throws: HeartbeatError.self) { try decoder.decode(altered, receivedOn: 0) }
        }
    }

    @Test func wrongClusterAndSelf() throws {
        var decoder = decoder()
        #expect(throws: HeartbeatError.wrongCluster("other")) { try decoder.decode(try packet(cluster: "other").encode(key: key), receivedOn: 0) }
        #expect(throws: HeartbeatError.fromSelf) { try decoder.decode(try packet(sender: "hostB").encode(key: key), receivedOn: 0) }
    }

    @Test func replayAndStaleIncarnation() throws {
        var decoder = decoder()
        let first = try packet(sequence: 10).encode(key: key)
        _ = try decoder.decode(first, receivedOn: 0)
        #expect(throws: HeartbeatError.replayedSequence(sender: "hostA", network: 0, sequence: 10, highest: 10)) {
            try decoder.decode(first, receivedOn: 0)
        }
        #expect(throws: HeartbeatError.self) { try decoder.decode(try packet(sequence: 9).encode(key: key), receivedOn: 0) }
        // The same sequence on another network is that network's own copy, not a replay.
        _ = try decoder.decode(try packet(sequence: 10, network: 1).encode(key: key), receivedOn: 1)
        // Restart of the sender: new incarnation, sequence starts over.
        _ = try decoder.decode(try packet(sequence: 1, incarnation: 6).encode(key: key), receivedOn: 0)
        #expect(throws: HeartbeatError.staleIncarnation(sender: "hostA", incarnation: 5, current: 6)) {
            try decoder.decode(try packet(sequence: 11, incarnation: 5).encode(key: key), receivedOn: 0)
        }
    }

    @Test func networkMismatch() throws {
        var decoder = decoder()
        #expect(throws: HeartbeatError.networkMismatch(claimed: 1, receivedOn: 0)) {
            try decoder.decode(try packet(network: 1).encode(key: key), receivedOn: 0)
        }
    }

    @Test func truncatedAndGarbage() throws {
        let bytes = try packet().encode(key: key)
        var decoder = decoder()
        for length in [0, 3, 5, 40, bytes.count - 1] {
            #expect(throws: HeartbeatError.self) { try decoder.decode(Array(bytes.prefix(length)), receivedOn: 0) }
        }
        #expect(throws: HeartbeatError.badMagic) { try decoder.decode(Array("GET / HTTP/1.1\r\n".utf8), receivedOn: 0) }
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let garbage = (0..<Int.random(in: 0..<300, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            #expect(throws: HeartbeatError.self) { try decoder.decode(garbage, receivedOn: 0) }
        }
        var future = bytes
        future[4] = 9
        #expect(throws: HeartbeatError.unsupportedVersion(9)) { try decoder.decode(future, receivedOn: 0) }
    }

    @Test func livenessNeedsAllNetworksSilent() {
        var liveness = PeerLiveness(networks: 2, detectionTimeout: .seconds(3), fenceTimeout: .seconds(2), startedAt: .milliseconds(0))
        liveness.received(on: 0, at: .milliseconds(1000), echoedTimestamp: .milliseconds(900))
        liveness.received(on: 1, at: .milliseconds(1000))
        for t in stride(from: Int64(1500), through: 5000, by: 500) {
            liveness.received(on: 1, at: .milliseconds(t))  // network 0 is cut after 1 s
        }
        var status = liveness.status(at: .milliseconds(5200))
        #expect(status.peerAlive)
        #expect(status.networks == [.silent(since: .milliseconds(1000)), .up(lastHeard: .milliseconds(5000))])
        #expect(status.lostAt == .milliseconds(8000))
        status = liveness.status(at: .milliseconds(8000))
        #expect(!status.peerAlive)
        // No echo since 900 ms: this host must fence at 2900 ms even though it still hears the peer.
        #expect(liveness.status(at: .milliseconds(2899)).mustFence == false)
        #expect(liveness.status(at: .milliseconds(2900)).mustFence)
    }

    @Test func livenessCountsSilenceFromStart() {
        let liveness = PeerLiveness(networks: 1, detectionTimeout: .seconds(3), fenceTimeout: .seconds(2), startedAt: .milliseconds(100))
        #expect(liveness.status(at: .milliseconds(3099)).peerAlive)
        #expect(!liveness.status(at: .milliseconds(3100)).peerAlive)
    }

    /// A graceful restart notice delays "lost" (not fencing); the next incarnation ends it.
    @Test func restartGraceDelaysLossButNotFencing() {
        var liveness = PeerLiveness(networks: 1, detectionTimeout: .seconds(3), fenceTimeout: .seconds(2), startedAt: .milliseconds(0))
        liveness.received(on: 0, at: .milliseconds(1000), echoedTimestamp: .milliseconds(1000))
        liveness.peerRestarting(at: .milliseconds(1000), grace: .seconds(30))
        #expect(liveness.status(at: .milliseconds(30_999)).peerAlive)
        #expect(!liveness.status(at: .milliseconds(31_000)).peerAlive)
        #expect(liveness.status(at: .milliseconds(3000)).mustFence, "our own fence deadline does not move")
        liveness.peerRestarted()
        #expect(!liveness.status(at: .milliseconds(4000)).peerAlive)
    }

    /// 100 VMs with 64-byte names and two volumes each, as one host sends them: every part fits
    /// one unfragmented datagram, authenticates on its own, is numbered on, and together they
    /// carry every VM once, in order. (Encoded whole, the same state is ~10 KiB: IP fragments.)
    @Test func oneHundredVMsSplitIntoDatagramsBelowTheMTU() throws {
        let volume = GenerationSummary(current: 0xFFFF_FFFF_FFFF, bitmap: 3, history: [2, 1], consistency: .consistent, crashedPrimary: false)
        let vms = (0..<100).map {
            Heartbeat.VMSummary(name: String(format: "%03d-", $0) + String(repeating: "x", count: 60), state: .prim, replica: .upToDate, volumes: [volume, volume])
        }
        let whole = try Heartbeat(
            clusterName: "c1", sender: "hostA", network: 0, incarnation: 5, sequence: 1, timestamp: .milliseconds(9), vms: vms
        ).encode(key: key)
        #expect(whole.count > 8 * Heartbeat.maximumDatagram)
        let parts = try Heartbeat.parts(
            clusterName: "c1", sender: "hostA", network: 0, incarnation: 5, firstSequence: 40, timestamp: .milliseconds(9),
            echo: (3, .milliseconds(8)), vms: vms, capacity: Resources(vcpus: 8, memoryMiB: 4096), key: key)
        // Packed: no more parts than the bytes need (each part repeats the ~120-byte header).
        #expect(parts.count > 1 && parts.count <= whole.count / (Heartbeat.maximumDatagram - 250) + 1, "\(parts.count) parts of \(whole.count) bytes")
        var decoder = decoder()
        var received: [Heartbeat.VMSummary] = []
        for (index, bytes) in parts.enumerated() {
            #expect(bytes.count <= Heartbeat.maximumDatagram)
            let part = try decoder.decode(bytes, receivedOn: 0)
            #expect(part.sequence == 40 + UInt64(index) && part.echo?.incarnation == 3 && part.capacity?.vcpus == 8)
            #expect(!part.vms.isEmpty)
            received += part.vms
        }
        #expect(received == vms)
        // A part replayed after a later one is refused like any replayed heartbeat.
        #expect(throws: HeartbeatError.self) { try decoder.decode(parts[0], receivedOn: 0) }
    }

    /// No VMs: one part, as before. One summary bigger than the limit (255-byte name, 40
    /// volumes): sent alone in its part, never dropped.
    @Test func partsOfNothingAndOfAnOversizedSummary() throws {
        let empty = try Heartbeat.parts(clusterName: "c1", sender: "hostA", network: 0, incarnation: 5, firstSequence: 1, timestamp: .milliseconds(0), vms: [], key: key)
        #expect(empty.count == 1)
        let volume = GenerationSummary(current: 1, bitmap: 1, history: [0, 0], consistency: .consistent, crashedPrimary: false)
        let big = Heartbeat.VMSummary(name: String(repeating: "b", count: 255), state: .prim, replica: .upToDate, volumes: Array(repeating: volume, count: 40))
        let small = Heartbeat.VMSummary(name: "s", state: .second, replica: .upToDate, volumes: [volume])
        let parts = try Heartbeat.parts(
            clusterName: "c1", sender: "hostA", network: 0, incarnation: 5, firstSequence: 1, timestamp: .milliseconds(0), vms: [small, big, small], key: key)
        var decoder = decoder()
        let decoded = try parts.map { try decoder.decode($0, receivedOn: 0).vms }
        #expect(decoded == [[small], [big], [small]])
        #expect(parts[1].count > Heartbeat.maximumDatagram && parts[0].count < Heartbeat.maximumDatagram)
    }

    /// Failed host checks ride in a version-4 heartbeat; with none the heartbeat stays version 3,
    /// which an older peer reads (issue 15).
    @Test func failingHostChecksRideInVersionFourOnly() throws {
        var heartbeat = packet()
        let healthy = try heartbeat.encode(key: key)
        #expect(healthy[Heartbeat.magic.count] == 3)
        heartbeat.failingHostChecks = ["interface vmbr0", "storage"]
        let troubled = try heartbeat.encode(key: key)
        #expect(troubled[Heartbeat.magic.count] == 4)
        var decoder = decoder()
        #expect(try decoder.decode(troubled, receivedOn: 0) == heartbeat)
        let parts = try Heartbeat.parts(
            clusterName: "c1", sender: "hostA", network: 0, incarnation: 6, firstSequence: 1, timestamp: .milliseconds(0),
            vms: heartbeat.vms, failingHostChecks: ["storage"], key: key)
        #expect(try parts.allSatisfy { try decoder.decode($0, receivedOn: 0).failingHostChecks == ["storage"] })
    }
}
