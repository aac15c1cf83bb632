import Testing
import Volume
@testable import Replication

@Suite struct PeerFrameDecoderTests {
    @Test func headerHasDocumentedByteLayout() {
        let header = PeerFrameHeader(type: .ack, flags: [], streamID: 0x0102_0304, sequence: 0x1122_3344_5566_7788,
                                     payloadLength: 4)
        let bytes = header.encoded
        #expect(bytes.count == 32)
        #expect(Array(bytes[0..<4]) == Array("VMHP".utf8))
        #expect(Array(bytes[4..<12]) == [0, 2, 0, 21, 0, 0, 0, 0])
        #expect(Array(bytes[12..<16]) == [1, 2, 3, 4])
        #expect(Array(bytes[16..<24]) == [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88])
        #expect(Array(bytes[24..<28]) == [0, 0, 0, 4])
        let crc = CRC32C.checksum(bytes[0..<28])
        #expect(Array(bytes[28..<32]) == [UInt8(crc >> 24), UInt8((crc >> 16) & 0xFF), UInt8((crc >> 8) & 0xFF), UInt8(crc & 0xFF)])
    }

    @Test func decodesFramesFedOneByteAtATime() throws {
        let write = PeerWrite(volumeID: 3, sequence: 9, offset: 4096, fua: true, data: Array(repeating: 0xAB, count: 5000))
        let ack = PeerAck(volumeID: 3, sequence: 9, status: 5)
        let stream = write.encoded() + ack.encoded()
        var decoder = PeerFrameDecoder()
        var messages: [PeerMessage] = []
        for byte in stream {
            decoder.receive([byte])
            while let frame = try decoder.next() { messages.append(try PeerMessage(frame: frame)) }
        }
        #expect(messages == [.write(write), .ack(ack)])
        #expect(decoder.bufferedByteCount == 0)
    }

    @Test func decodesManyFramesFromOneChunk() throws {
        var stream: [UInt8] = []
        for i in 0..<100 { PeerAck(volumeID: 1, sequence: UInt64(i)).encode(into: &stream) }
        var decoder = PeerFrameDecoder()
        decoder.receive(stream)
        var sequences: [UInt64] = []
        while let frame = try decoder.next() { sequences.append(frame.header.sequence) }
        #expect(sequences == Array(0..<100))
    }

    @Test func anIncompletePayloadIsHandedOverAndTheNextFrameStillDecodes() throws {
        let data = (0..<10000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        let block = PeerResyncData(volumeID: 2, requestID: 5, offset: 1 << 20, content: .data(data[...])).encoded()
        let ack = PeerAck(volumeID: 2, sequence: 6).encoded()
        var decoder = PeerFrameDecoder()
        decoder.receive(block[0..<100])
        #expect(try decoder.next() == nil)
        let refused = decoder.takeIncompletePayload(if: { $0.type == .write })
        #expect(refused == nil)
        let taken = decoder.takeIncompletePayload(if: { $0.type == .resyncData })
        let (header, received) = try #require(taken)
        #expect(header.type == .resyncData && header.sequence == 5 && header.payloadLength == UInt32(8 + data.count))
        #expect(received == Array(block[32..<100]))
        // The caller received the rest of the payload itself; the decoder goes on with the next header.
        decoder.receive(ack)
        let frame = try #require(try decoder.next())
        #expect(try PeerMessage(frame: frame) == .ack(PeerAck(volumeID: 2, sequence: 6)))
        #expect(decoder.bufferedByteCount == 0)
    }

    @Test func writeDataIsASliceOfTheFramePayload() throws {
        let data = (0..<65536).map { UInt8(truncatingIfNeeded: $0) }
        var decoder = PeerFrameDecoder()
        decoder.receive(PeerWrite(volumeID: 1, sequence: 1, offset: 0, data: data).encoded())
        let frame = try #require(try decoder.next())
        guard case .write(let write) = try PeerMessage(frame: frame) else {
            Issue.record("not a WRITE")
            return
        }
        #expect(write.data.elementsEqual(data))
        // Same storage: the slice starts 8 bytes (the offset field) into the payload array.
        let sameStorage = frame.payload.withUnsafeBufferPointer { p in
            write.data.withUnsafeBufferPointer { d in d.baseAddress == p.baseAddress! + 8 }
        }
        #expect(sameStorage)
    }

    @Test func rejectsBadMagic() {
        var bytes = PeerAck(volumeID: 1, sequence: 1).encoded()
        bytes[0] = UInt8(ascii: "X")
        #expect(throws: PeerProtocolError.badMagic(0x584D_4850)) { try decodeOne(bytes) }
    }

    @Test func rejectsCorruptHeaderBeforeTrustingItsLength() {
        var bytes = PeerWrite(volumeID: 1, sequence: 1, offset: 0, data: [1, 2, 3]).encoded()
        // A flipped bit in the length must not make us wait for (or buffer) gigabytes.
        bytes[24] ^= 0x80
        var decoder = PeerFrameDecoder()
        decoder.receive(bytes)
        #expect {
            _ = try decoder.next()
        } throws: { error in
            if case .badHeaderChecksum = error as? PeerProtocolError { return true }
            return false
        }
    }

    @Test func rejectsOversizedPayloadBeforeBuffering() {
        let header = PeerFrameHeader(type: .write, streamID: 1, sequence: 1, payloadLength: 1 << 20)
        var decoder = PeerFrameDecoder(maximumPayloadLength: 64 << 10)
        decoder.receive(header.encoded)
        #expect(throws: PeerProtocolError.payloadTooLarge(type: .write, length: 1 << 20, maximum: 64 << 10)) {
            _ = try decoder.next()
        }
        #expect(decoder.payload.capacity < 64 << 10)
    }

    @Test func rejectsFixedSizeFrameWithOtherLength() {
        let header = PeerFrameHeader(type: .ack, streamID: 1, sequence: 1, payloadLength: 16 << 20)
        #expect(throws: PeerProtocolError.invalidPayloadLength(type: .ack, length: 16 << 20, expected: "4...4 bytes")) {
            try decodeOne(header.encoded)
        }
    }

    @Test func rejectsUnknownTypeFlagsVersionAndReserved() throws {
        func header(mutating body: (inout [UInt8]) -> Void) -> [UInt8] {
            var bytes = PeerAck(volumeID: 1, sequence: 1).encoded()
            body(&bytes)
            bytes.storeBigEndian(CRC32C.checksum(bytes[0..<28]), at: 28)
            return bytes
        }
        #expect(throws: PeerProtocolError.unknownFrameType(999)) {
            try decodeOne(header { $0.storeBigEndian(UInt16(999), at: 6) })
        }
        #expect(throws: PeerProtocolError.invalidFlags(type: .ack, flags: 1)) {
            try decodeOne(header { $0.storeBigEndian(UInt16(1), at: 8) })
        }
        #expect(throws: PeerProtocolError.unsupportedVersion(3)) {
            try decodeOne(header { $0.storeBigEndian(UInt16(3), at: 4) })
        }
        // Version 1 survives only for the frozen handshake frames: a version 1 peer is refused
        // during the handshake, and none of its data frames is ever accepted.
        #expect(throws: PeerProtocolError.unsupportedVersion(1)) {
            try decodeOne(header { $0.storeBigEndian(UInt16(1), at: 4) })
        }
        var decoder = PeerFrameDecoder()
        decoder.receive(PeerWelcome().encoded(version: 1))
        #expect(try decoder.next()?.header.type == .welcome)
        #expect(throws: PeerProtocolError.nonZeroReserved(0x10)) {
            try decodeOne(header { $0.storeBigEndian(UInt16(0x10), at: 10) })
        }
    }

    @Test func errorIsStickyAndNothingIsYieldedAfterIt() {
        var decoder = PeerFrameDecoder()
        decoder.receive(Array(repeating: 0, count: 32))
        #expect(throws: PeerProtocolError.self) { _ = try decoder.next() }
        decoder.receive(PeerAck(volumeID: 1, sequence: 1).encoded())
        #expect(throws: PeerProtocolError.badMagic(0)) { _ = try decoder.next() }
    }

    @Test func truncatedFrameYieldsNothing() throws {
        let bytes = PeerWrite(volumeID: 1, sequence: 1, offset: 0, data: [1, 2, 3]).encoded()
        var decoder = PeerFrameDecoder()
        decoder.receive(bytes.dropLast())
        #expect(try decoder.next() == nil)
        #expect(decoder.undecodedBytes == Array(bytes.dropLast()))
        decoder.receive(bytes.suffix(1))
        #expect(try decoder.next()?.payload.count == 11)
    }

    /// 1 MiB WRITE frames back to back, received in 256 KiB reads whose boundaries fall anywhere
    /// in a frame. (Coding speed is measured in perf/Benchmarks, PeerFrameBenchmarks.)
    @Test func decodesOneMiBWriteFramesFromSocketSizedReads() throws {
        let writes = (0..<4).map { i in
            PeerWrite(volumeID: 1, sequence: UInt64(i), offset: UInt64(i) << 20,
                      data: Array(repeating: UInt8(0x5A + i), count: 1 << 20))
        }
        var stream: [UInt8] = []
        for w in writes { w.encode(into: &stream) }
        var decoder = PeerFrameDecoder()
        var decoded: [PeerMessage] = []
        for start in stride(from: 0, to: stream.count, by: 256 << 10) {
            decoder.receive(stream[start..<min(start + (256 << 10), stream.count)])
            while let f = try decoder.next() { decoded.append(try PeerMessage(frame: f)) }
        }
        #expect(decoded == writes.map { .write($0) })
        #expect(decoder.bufferedByteCount == 0)
    }

    /// Encoding into a reused buffer appends exactly one frame, the same as `encoded()`.
    @Test func writeEncodesIntoAReusedBuffer() {
        let data = Array(repeating: UInt8(0x5A), count: 1 << 20)
        var out: [UInt8] = []
        out.reserveCapacity(PeerWrite.prefixSize + data.count)
        for i in 0..<3 {
            out.removeAll(keepingCapacity: true)
            PeerWrite(volumeID: 1, sequence: UInt64(i), offset: 0, data: data).encode(into: &out)
        }
        #expect(out.count == PeerWrite.prefixSize + data.count)
        #expect(out == PeerWrite(volumeID: 1, sequence: 2, offset: 0, data: data).encoded())
    }

    /// Many ACKs round-trip through reads that split frames at arbitrary points.
    @Test func acksRoundTripAcrossReadBoundaries() throws {
        let count = 5_000
        var stream: [UInt8] = []
        stream.reserveCapacity(count * PeerAck.encodedSize)
        for i in 0..<count { PeerAck(volumeID: 1, sequence: UInt64(i), status: UInt32(i % 3)).encode(into: &stream) }
        #expect(stream.count == count * PeerAck.encodedSize)
        var decoder = PeerFrameDecoder()
        var acks: [PeerAck] = []
        for start in stride(from: 0, to: stream.count, by: 64 << 10) {
            decoder.receive(stream[start..<min(start + (64 << 10), stream.count)])
            while let f = try decoder.next() {
                guard case .ack(let ack) = try PeerMessage(frame: f) else {
                    Issue.record("not an ACK")
                    continue
                }
                acks.append(ack)
            }
        }
        #expect(acks == (0..<count).map { PeerAck(volumeID: 1, sequence: UInt64($0), status: UInt32($0 % 3)) })
    }
}

func decodeOne(_ bytes: [UInt8]) throws(PeerProtocolError) {
    var decoder = PeerFrameDecoder()
    decoder.receive(bytes)
    _ = try decoder.next()
}
