/// RESYNC_CHECKSUM: checksum-based resync. The target sends the digest of a
/// range it holds; the source answers with RESYNC_DATA only if its own data
/// differs (DRBD's "csums-alg"), saving the transfer of identical blocks.
///
/// Header: stream id = volume id, sequence = request id. Payload: offset u64,
/// length u32 (1 … 32 MiB), algorithm u8 (1 = CRC32C, 2 = SHA-256),
/// reserved 3 bytes (0), digest (4 or 32 bytes).
public struct PeerResyncChecksum: PeerMessageCodable {
    public static let frameType = PeerFrameType.resyncChecksum

    public enum Digest: Sendable, Hashable {
        case crc32c(UInt32)
        /// 32 bytes.
        case sha256([UInt8])
    }

    public var volumeID: UInt32
    public var requestID: UInt64
    public var offset: UInt64
    public var length: UInt32
    public var digest: Digest

    public init(volumeID: UInt32, requestID: UInt64, offset: UInt64, length: UInt32, digest: Digest) {
        if case .sha256(let d) = digest { precondition(d.count == 32, "SHA-256 digest must be 32 bytes") }
        self.volumeID = volumeID
        self.requestID = requestID
        self.offset = offset
        self.length = length
        self.digest = digest
    }

    public var headerStreamID: UInt32 { volumeID }
    public var headerSequence: UInt64 { requestID }

    public func encodePayload(into out: inout [UInt8]) {
        out.appendBigEndian(offset)
        out.appendBigEndian(length)
        switch digest {
        case .crc32c(let c):
            out.append(contentsOf: [1, 0, 0, 0])
            out.appendBigEndian(c)
        case .sha256(let d):
            out.append(contentsOf: [2, 0, 0, 0])
            out.append(contentsOf: d)
        }
    }

    public init(header: PeerFrameHeader, payload: ArraySlice<UInt8>) throws(PeerProtocolError) {
        try header.requireType(Self.frameType)
        var r = PayloadReader(type: Self.frameType, bytes: payload)
        volumeID = header.streamID
        requestID = header.sequence
        offset = try r.read(UInt64.self, "offset")
        length = try r.read(UInt32.self, "length")
        let algorithm = try r.read(UInt8.self, "algorithm")
        let reserved = try r.readBytes(3, "reserved")
        guard reserved.allSatisfy({ $0 == 0 }) else {
            throw .fieldOutOfRange(type: Self.frameType, field: "reserved", value: "\(Array(reserved))")
        }
        switch algorithm {
        case 1: digest = .crc32c(try r.read(UInt32.self, "crc32c"))
        case 2: digest = .sha256(Array(try r.readBytes(32, "sha256")))
        default: throw .fieldOutOfRange(type: Self.frameType, field: "algorithm", value: "\(algorithm)")
        }
        try r.finish()
        try checkDataRange(Self.frameType, offset: offset, length: length)
    }
}
