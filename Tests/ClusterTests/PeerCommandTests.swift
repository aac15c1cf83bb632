import Testing

@testable import Cluster

@Suite("Peer commands: wire format and replay window")
struct PeerCommandTests {
    let key = (0..<32).map { UInt8($0) }

    func command(_ kind: PeerCommand.Kind = .promote, detail: String = "", incarnation: UInt64 = 7, sequence: UInt64 = 1) -> PeerCommand {
        PeerCommand(kind: kind, sender: "hostA", target: "hostB", vm: "web1", detail: detail, incarnation: incarnation, sequence: sequence)
    }

    @Test func everyKindRoundTrips() throws {
        for kind in PeerCommand.Kind.allCases {
            for detail in ["", "/run/vmha/nbd", String(repeating: "é", count: 100)] {
                let original = command(kind, detail: detail, incarnation: 1_764_000_000_000, sequence: .max)
                #expect(try PeerCommand.decode(original.encode(key: key), key: key) == original)
            }
        }
    }

    @Test func badInputIsRefusedWithAReason() throws {
        let bytes = command().encode(key: key)
        #expect(throws: PeerCommandError.badAuthentication) { try PeerCommand.decode(bytes, key: key.reversed()) }
        for index in bytes.indices {
            var altered = bytes
            altered[index] ^= 0x01
            #expect(throws: PeerCommandError.self, "byte \(index) altered") { try PeerCommand.decode(altered, key: key) }
        }
        for length in 0..<bytes.count {
            #expect(throws: PeerCommandError.self, "cut to \(length) bytes") { try PeerCommand.decode(Array(bytes.prefix(length)), key: key) }
        }
        #expect(throws: PeerCommandError.malformed("not a peer command (no VMHC magic)")) { try PeerCommand.decode([1, 2, 3], key: key) }
    }

    @Test func eachCommandIsAdmittedOnce() {
        var window = PeerCommandReplayWindow()
        #expect(window.admit(incarnation: 7, sequence: 1) == .peerNotHeard, "nothing is admitted before a heartbeat names the incarnation")
        window.peerAnnounced(incarnation: 7)
        #expect(window.admit(incarnation: 7, sequence: 1) == .admitted)
        #expect(window.admit(incarnation: 7, sequence: 1) == .replayed, "the copy from the second network, or a capture played again")
        #expect(window.admit(incarnation: 7, sequence: 3) == .admitted)
        #expect(window.admit(incarnation: 7, sequence: 2) == .admitted, "out of order within the window")
        #expect(window.admit(incarnation: 7, sequence: 2) == .replayed)
        #expect(window.admit(incarnation: 7, sequence: 3) == .replayed)
        #expect(window.admit(incarnation: 7, sequence: 200) == .admitted)
        #expect(window.admit(incarnation: 7, sequence: 200 - PeerCommandReplayWindow.width) == .tooOld(highest: 200))
        #expect(window.admit(incarnation: 7, sequence: 200 - PeerCommandReplayWindow.width + 1) == .admitted, "the window's oldest slot")
        #expect(window.admit(incarnation: 6, sequence: 500) == .staleIncarnation(current: 7))
        // The peer restarted: its new incarnation starts its sequences again; the old one's are stale.
        window.peerAnnounced(incarnation: 8)
        #expect(window.admit(incarnation: 8, sequence: 1) == .admitted)
        #expect(window.admit(incarnation: 7, sequence: 201) == .staleIncarnation(current: 8))
        // A command may overtake the first heartbeat of a new incarnation.
        #expect(window.admit(incarnation: 9, sequence: 1) == .admitted)
        window.peerAnnounced(incarnation: 9)
        #expect(window.admit(incarnation: 9, sequence: 1) == .replayed, "a late heartbeat of the same incarnation does not reset the window")
        window.peerAnnounced(incarnation: 8)
        #expect(window.incarnation == 9, "an older heartbeat does not move the incarnation back")
    }

    /// Every sequence in a long shuffled stream with duplicates is admitted exactly once.
    @Test func aShuffledStreamWithDuplicatesIsAdmittedOnceEach() {
        var generator = SplitMix64(state: 12)
        var window = PeerCommandReplayWindow()
        window.peerAnnounced(incarnation: 1)
        var admitted: [UInt64: Int] = [:]
        for base in stride(from: UInt64(1), to: 5000, by: 16) {
            // Each block of 16 arrives shuffled, each twice (two networks): within the window.
            var block = (base..<(base + 16)).flatMap { [$0, $0] }
            block.shuffle(using: &generator)
            for sequence in block where window.admit(incarnation: 1, sequence: sequence) == .admitted {
                admitted[sequence, default: 0] += 1
            }
        }
        #expect(admitted.count == 5008)
        #expect(admitted.values.allSatisfy { $0 == 1 })
    }
}

@Suite struct PromoteDetailTests {
    @Test func roundTripsAndReadsAnOlderPeersEmptyDetail() {
        #expect(PromoteDetail(handover: 3).encoded == "handover=3")
        #expect(PromoteDetail(handover: 4, checkerMove: true).encoded == "handover=4,checker-move")
        for detail in [PromoteDetail(handover: 3), PromoteDetail(handover: 4, checkerMove: true)] {
            #expect(PromoteDetail(decoding: detail.encoded) == detail)
        }
        #expect(PromoteDetail(decoding: "") == PromoteDetail(handover: nil))
        #expect(PromoteDetail(decoding: "handover=x") == PromoteDetail(handover: nil))
    }
}
