import FoundationEssentials
import ReplicationPolicy
import Testing
import Volume
@testable import Replication

/// One message of every type, with non-trivial field values.
let sampleMessages: [PeerMessage] = [
    .hello(PeerHello(versions: 1...3, nonce: Array(repeating: 9, count: 32), hostName: "node-a", clusterName: "prod")),
    .challenge(PeerChallenge(version: 1, nonce: Array(0..<32))),
    .response(PeerResponse(mac: Array(100..<132))),
    .welcome(PeerWelcome()),
    .refuse(PeerRefuse(reason: .clusterMismatch, message: "this is cluster 'prod' ✓")),
    .volumeState(PeerVolumeState(
        volumeID: 7, volumeUUID: UUID(uuid: (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16)), name: "vm-disk0",
        size: 1 << 40, grainSize: 64 << 10,
        generations: GenerationIdentifiers(current: 0xAAAA, bitmap: 0xBBBB, history: [0xCCCC, 0xDDDD], origin: .promotion),
        consistency: .outdated, roles: [.wasPrimary, .crashedPrimary], dirtyBytes: 3 << 16,
        splitBrainPolicy: .discardLeastChanges)),
    .write(PeerWrite(volumeID: 7, sequence: 42, offset: 1 << 30, fua: true, data: [1, 2, 3, 4, 5])),
    .writeZeroes(PeerWriteZeroes(volumeID: 7, sequence: 43, offset: 8192, length: 1 << 20, fua: false, noHole: true)),
    .trim(PeerTrim(volumeID: 7, sequence: 44, offset: 0, length: 4096, fua: true)),
    .flush(PeerFlush(volumeID: 7, sequence: 45)),
    .ack(PeerAck(volumeID: 7, sequence: 42, status: 28)),
    .resyncRequest(PeerResyncRequest(volumeID: 7, requestID: 1, offset: 65536, length: 65536)),
    .resyncData(PeerResyncData(volumeID: 7, requestID: 1, offset: 65536, content: .data([9, 9, 9][...]))),
    .resyncData(PeerResyncData(volumeID: 7, requestID: 2, offset: 131072, content: .zeroes(length: 65536))),
    .resyncChecksum(PeerResyncChecksum(volumeID: 7, requestID: 3, offset: 0, length: 4096, digest: .crc32c(0xDEAD_BEEF))),
    .resyncChecksum(PeerResyncChecksum(volumeID: 7, requestID: 4, offset: 0, length: 4096, digest: .sha256(Array(0..<32)))),
    .resyncDone(PeerResyncDone(volumeID: 7, bytesSynced: 123_456)),
    .bitmap(PeerBitmap(volumeID: 7, byteOffset: 4096, totalLength: 8192, chunk: Array(repeating: 0xFF, count: 4096)[...])),
    .ping(PeerPing(token: 77)),
    .pong(PeerPong(token: 77)),
    .goodbye(PeerGoodbye(reason: 0, message: "shutting down")),
    .supportRequest(PeerSupportRequest(sinceSeconds: 3600)),
    .supportData(PeerSupportData(byteOffset: 4, totalLength: 9, chunk: Array("bundl".utf8)[...])),
]

@Suite struct PeerMessageTests {
    @Test func coversEveryFrameType() {
        #expect(Set(sampleMessages.map(\.frameType)) == Set(PeerFrameType.allCases))
    }

    @Test(arguments: sampleMessages)
    func roundTripsThroughTheDecoder(_ message: PeerMessage) throws {
        let bytes = message.encoded()
        var decoder = PeerFrameDecoder()
        decoder.receive(bytes)
        let frame = try #require(try decoder.next())
        #expect(frame.header.type == message.frameType)
        let decoded = try PeerMessage(frame: frame)
        #expect(decoded == message)
        #expect(decoded.encoded() == bytes)
        #expect(frame.encoded == bytes)
    }

    @Test func writePrefixPlusDataEqualsTheWholeFrame() {
        let data = Array(repeating: UInt8(0x11), count: 4096)
        var prefix: [UInt8] = []
        PeerWrite.encodePrefix(into: &prefix, volumeID: 2, sequence: 5, offset: 8192, fua: true, dataLength: data.count)
        #expect(prefix.count == PeerWrite.prefixSize)
        #expect(prefix + data == PeerWrite(volumeID: 2, sequence: 5, offset: 8192, fua: true, data: data).encoded())
    }

    @Test func volumeStateFeedsSyncDecision() {
        guard case .volumeState(let state) = sampleMessages[5] else { Issue.record("sample order changed"); return }
        #expect(state.replicaState == ReplicaState(
            generations: state.generations, crashedPrimary: true, consistency: .outdated, dirtyBytes: 3 << 16))
        #expect(state.generations.origin == .promotion)
        #expect(!state.isBitmapEmpty)
    }

    /// Re-encodes `message` with its payload changed by `mutate` (header fixed up).
    func decodeMutated(_ message: PeerMessage, _ mutate: (inout [UInt8]) -> Void) throws(PeerProtocolError) -> PeerMessage {
        var frame = message.frame()
        mutate(&frame.payload)
        frame.header.payloadLength = UInt32(frame.payload.count)
        return try PeerMessage(frame: frame)
    }

    @Test func rejectsZeroLengthAndWrappingRanges() {
        let trim = PeerMessage.trim(PeerTrim(volumeID: 1, sequence: 1, offset: 0, length: 1))
        #expect(throws: PeerProtocolError.fieldOutOfRange(type: .trim, field: "length", value: "0")) {
            try decodeMutated(trim) { $0.storeBigEndian(UInt64(0), at: 8) }
        }
        #expect(throws: PeerProtocolError.fieldOutOfRange(type: .trim, field: "offset+length",
                                                          value: "\(UInt64.max)+1")) {
            try decodeMutated(trim) { $0.storeBigEndian(UInt64.max, at: 0) }
        }
    }

    @Test func rejectsInvalidUTF8InsteadOfRepairingIt() {
        let hello = sampleMessages[0]
        #expect(throws: PeerProtocolError.invalidText(type: .hello, field: "host name")) {
            // host name starts at 4 + 32 + 2.
            try decodeMutated(hello) { $0[38] = 0xFF }
        }
    }

    @Test func rejectsTrailingAndTruncatedPayloads() {
        #expect(throws: PeerProtocolError.trailingBytes(type: .hello, count: 1)) {
            try decodeMutated(sampleMessages[0]) { $0.append(0) }
        }
        #expect(throws: PeerProtocolError.truncatedPayload(type: .hello, field: "cluster name")) {
            try decodeMutated(sampleMessages[0]) { $0.removeLast() }
        }
    }

    @Test func rejectsResyncZeroesLongerThanADataBlock() {
        let zeroes = sampleMessages[13]
        let tooLong = UInt32(PeerProtocol.maximumDataLength + 1)
        #expect(throws: PeerProtocolError.fieldOutOfRange(type: .resyncData, field: "length", value: "\(tooLong)")) {
            try decodeMutated(zeroes) { $0.storeBigEndian(tooLong, at: 8) }
        }
    }

    @Test func rejectsBitmapChunkPastTheTotal() {
        #expect(throws: PeerProtocolError.self) {
            try decodeMutated(sampleMessages[17]) { $0.storeBigEndian(UInt64(4097), at: 8) }
        }
    }

    @Test func rejectsUnknownVolumeStateFieldValues() {
        let state = sampleMessages[5]
        #expect(throws: PeerProtocolError.fieldOutOfRange(type: .volumeState, field: "consistency", value: "3")) {
            try decodeMutated(state) { $0[72] = 3 }
        }
        #expect(throws: PeerProtocolError.fieldOutOfRange(type: .volumeState, field: "role flags", value: "0x10")) {
            try decodeMutated(state) { $0[73] = 0x10 }
        }
        #expect(throws: PeerProtocolError.fieldOutOfRange(type: .volumeState, field: "grain size", value: "1000")) {
            try decodeMutated(state) { $0.storeBigEndian(UInt64(1000), at: 24) }
        }
        #expect(throws: PeerProtocolError.fieldOutOfRange(type: .volumeState, field: "split-brain policy", value: "4")) {
            try decodeMutated(state) { $0[74] = 4 }
        }
        #expect(throws: PeerProtocolError.fieldOutOfRange(type: .volumeState, field: "generation origin", value: "3")) {
            try decodeMutated(state) { $0[75] = 3 }
        }
    }

    @Test func everySplitBrainPolicyHasItsOwnWireValue() throws {
        guard case .volumeState(var state) = sampleMessages[5] else { Issue.record("sample order changed"); return }
        var seen = Set<UInt8>()
        for policy in SplitBrainPolicy.allCases {
            state.splitBrainPolicy = policy
            let frame = PeerMessage.volumeState(state).frame()
            seen.insert(frame.payload[frame.payload.startIndex + 74])
            #expect(try PeerMessage(frame: frame) == .volumeState(state))
        }
        #expect(seen.count == SplitBrainPolicy.allCases.count)
    }

    @Test func rejectsStreamIDOnConnectionLevelFrames() {
        var frame = PeerPing(token: 1).frame()
        frame.header.streamID = 5
        #expect(throws: PeerProtocolError.fieldOutOfRange(type: .ping, field: "stream id", value: "5")) {
            try PeerMessage(frame: frame)
        }
    }

    @Test func ackEncodingIsFixedSize() {
        #expect(PeerAck(volumeID: 1, sequence: 1).encoded().count == PeerAck.encodedSize)
    }
}
