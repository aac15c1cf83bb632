/// RESYNC_REQUEST: the sync target asks the source for one range.
///
/// Header: stream id = volume id, sequence = request id (echoed by the
/// RESYNC_DATA / RESYNC_CHECKSUM answer). Payload: offset u64,
/// length u32 (1 … 32 MiB).
public struct PeerResyncRequest: PeerMessageCodable {
    public static let frameType = PeerFrameType.resyncRequest

    public var volumeID: UInt32
    public var requestID: UInt64
    public var offset: UInt64
    public var length: UInt32

    public init(volumeID: UInt32, requestID: UInt64, offset: UInt64, length: UInt32) {
        self.volumeID = volumeID
        self.requestID = requestID
        self.offset = offset
        self.length = length
    }

    public var headerStreamID: UInt32 { volumeID }
    public var headerSequence: UInt64 { requestID }

    public func encodePayload(into out: inout [UInt8]) {
        out.appendBigEndian(offset)
        out.appendBigEndian(length)
    }

    public init(header: PeerFrameHeader, payload: ArraySlice<UInt8>) throws(PeerProtocolError) {
        try header.requireType(Self.frameType)
        var r = PayloadReader(type: Self.frameType, bytes: payload)
        volumeID = header.streamID
        requestID = header.sequence
        offset = try r.read(UInt64.self, "offset")
        length = try r.read(UInt32.self, "length")
        try r.finish()
        try checkDataRange(Self.frameType, offset: offset, length: length)
    }
}
