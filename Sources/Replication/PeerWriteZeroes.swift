/// WRITE_ZEROES: a replicated zeroing of a range (no data on the wire).
///
/// Header: stream id = volume id, sequence = write sequence, flags FUA,
/// NO_HOLE. Payload: offset u64, length u64 (> 0, no wrap-around).
public struct PeerWriteZeroes: PeerMessageCodable {
    public static let frameType = PeerFrameType.writeZeroes

    public var volumeID: UInt32
    public var sequence: UInt64
    public var offset: UInt64
    public var length: UInt64
    public var fua: Bool
    /// The peer must allocate the range rather than punch a hole.
    public var noHole: Bool

    public init(volumeID: UInt32, sequence: UInt64, offset: UInt64, length: UInt64, fua: Bool = false, noHole: Bool = false) {
        self.volumeID = volumeID
        self.sequence = sequence
        self.offset = offset
        self.length = length
        self.fua = fua
        self.noHole = noHole
    }

    public var headerFlags: PeerFrameFlags {
        var f: PeerFrameFlags = []
        if fua { f.insert(.fua) }
        if noHole { f.insert(.noHole) }
        return f
    }
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
        noHole = header.flags.contains(.noHole)
        (offset, length) = try decodeRangePayload(Self.frameType, payload)
    }
}
