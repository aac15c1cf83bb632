/// TRIM: a replicated discard of a range.
///
/// Header: stream id = volume id, sequence = write sequence, flag FUA.
/// Payload: offset u64, length u64 (> 0, no wrap-around).
public struct PeerTrim: PeerMessageCodable {
    public static let frameType = PeerFrameType.trim

    public var volumeID: UInt32
    public var sequence: UInt64
    public var offset: UInt64
    public var length: UInt64
    public var fua: Bool

    public init(volumeID: UInt32, sequence: UInt64, offset: UInt64, length: UInt64, fua: Bool = false) {
        self.volumeID = volumeID
        self.sequence = sequence
        self.offset = offset
        self.length = length
        self.fua = fua
    }

    public var headerFlags: PeerFrameFlags { fua ? .fua : [] }
    public var headerStreamID: UInt32 { volumeID }
    public var headerSequence: UInt64 { sequence }

    public func encodePayload(into out: inout [UInt8]) {
        out.appendBigEndian(offset)
        out.appendBigEndian(length)
    }

    public init(header: PeerFrameHeader, payload: ArraySlice<UInt8>) throws(PeerProtocolError) {
        try header.requireType(Self.frameType)
        volumeID = header.streamID
        sequence = header.sequence
        fua = header.flags.contains(.fua)
        (offset, length) = try decodeRangePayload(Self.frameType, payload)
    }
}
