/// FLUSH: a write barrier. The peer makes every write with a sequence below
/// this one durable before it ACKs the FLUSH's own sequence.
///
/// Header: stream id = volume id, sequence = barrier sequence. Empty payload.
public struct PeerFlush: PeerMessageCodable {
    public static let frameType = PeerFrameType.flush

    public var volumeID: UInt32
    public var sequence: UInt64

    public init(volumeID: UInt32, sequence: UInt64) {
        self.volumeID = volumeID
        self.sequence = sequence
    }

    public var headerStreamID: UInt32 { volumeID }
    public var headerSequence: UInt64 { sequence }

    public func encodePayload(into out: inout [UInt8]) {}

    public init(header: PeerFrameHeader, payload: ArraySlice<UInt8>) throws(PeerProtocolError) {
        try header.requireType(Self.frameType)
        volumeID = header.streamID
        sequence = header.sequence
        try PayloadReader(type: Self.frameType, bytes: payload).finish()
    }
}
