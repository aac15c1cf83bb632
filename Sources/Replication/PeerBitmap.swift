/// BITMAP: one chunk of a serialized ``DirtyBitmap`` (the on-disk layout of
/// `docs/format.md`: bit `g % 64` of little-endian u64 word `g / 64`), so the
/// sides can merge their bitmaps before an incremental resync.
///
/// Header: stream id = volume id. Payload: byte offset u64 of this chunk in
/// the serialized bitmap, total serialized length u64, chunk bytes
/// (offset + count ≤ total). The chunk with offset + count == total is the last.
public struct PeerBitmap: PeerMessageCodable {
    public static let frameType = PeerFrameType.bitmap

    public var volumeID: UInt32
    public var byteOffset: UInt64
    public var totalLength: UInt64
    public var chunk: ArraySlice<UInt8>

    public init(volumeID: UInt32, byteOffset: UInt64, totalLength: UInt64, chunk: ArraySlice<UInt8>) {
        self.volumeID = volumeID
        self.byteOffset = byteOffset
        self.totalLength = totalLength
        self.chunk = chunk
    }

    /// Whether this chunk completes the bitmap.
    public var isLast: Bool { byteOffset + UInt64(chunk.count) == totalLength }

    public var headerStreamID: UInt32 { volumeID }

    public func encodePayload(into out: inout [UInt8]) { out.appendChunk(byteOffset: byteOffset, totalLength: totalLength, chunk) }

    public init(header: PeerFrameHeader, payload: ArraySlice<UInt8>) throws(PeerProtocolError) {
        try header.requireType(Self.frameType)
        try header.requireNoSequence()
        var r = PayloadReader(type: Self.frameType, bytes: payload)
        volumeID = header.streamID
        (byteOffset, totalLength, chunk) = try r.readChunk()
    }
}
