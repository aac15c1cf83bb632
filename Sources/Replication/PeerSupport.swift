/// SUPPORT_REQUEST: instead of a volume's VOLUME_STATE, the first frame after the handshake may
/// ask the accepting node for its part of a support bundle (`vmha support-bundle`): the link is
/// the cluster's authenticated channel, so only a holder of the cluster key gets it.
///
/// Payload: since u64 (seconds of history wanted; 0 = all the node keeps).
public struct PeerSupportRequest: PeerMessageCodable {
    public static let frameType = PeerFrameType.supportRequest

    public var sinceSeconds: UInt64

    public init(sinceSeconds: UInt64) { self.sinceSeconds = sinceSeconds }

    public func encodePayload(into out: inout [UInt8]) { out.appendBigEndian(sinceSeconds) }

    public init(header: PeerFrameHeader, payload: ArraySlice<UInt8>) throws(PeerProtocolError) {
        try header.requireType(Self.frameType)
        try header.requireNoStreamOrSequence()
        var r = PayloadReader(type: Self.frameType, bytes: payload)
        sinceSeconds = try r.read(UInt64.self, "since")
        try r.finish()
    }
}

/// SUPPORT_DATA: one chunk of the answer to a ``PeerSupportRequest`` (the node's bundle part, an
/// opaque byte string to this layer).
///
/// Payload: byte offset u64 of this chunk, total length u64, chunk bytes (offset + count ≤
/// total). The chunk with offset + count == total is the last; an empty answer is one empty chunk.
public struct PeerSupportData: PeerMessageCodable {
    public static let frameType = PeerFrameType.supportData

    public var byteOffset: UInt64
    public var totalLength: UInt64
    public var chunk: ArraySlice<UInt8>

    public init(byteOffset: UInt64, totalLength: UInt64, chunk: ArraySlice<UInt8>) {
        self.byteOffset = byteOffset
        self.totalLength = totalLength
        self.chunk = chunk
    }

    public var isLast: Bool { byteOffset + UInt64(chunk.count) == totalLength }

    public func encodePayload(into out: inout [UInt8]) { out.appendChunk(byteOffset: byteOffset, totalLength: totalLength, chunk) }

    public init(header: PeerFrameHeader, payload: ArraySlice<UInt8>) throws(PeerProtocolError) {
        try header.requireType(Self.frameType)
        try header.requireNoStreamOrSequence()
        var r = PayloadReader(type: Self.frameType, bytes: payload)
        (byteOffset, totalLength, chunk) = try r.readChunk()
    }

    /// The frames of a whole answer, in chunks of at most `chunkSize` bytes.
    public static func frames(for bytes: [UInt8], chunkSize: Int = 1 << 20) -> [PeerSupportData] {
        let total = UInt64(bytes.count)
        guard !bytes.isEmpty else { return [PeerSupportData(byteOffset: 0, totalLength: 0, chunk: [])] }
        return stride(from: 0, to: bytes.count, by: chunkSize).map {
            PeerSupportData(byteOffset: UInt64($0), totalLength: total, chunk: bytes[$0..<min(bytes.count, $0 + chunkSize)])
        }
    }
}
