/// RESYNC_DONE: the sync source has sent every range; the target may mark
/// itself consistent once everything it received is durable, and both sides
/// then retire the bitmap generation (``GenerationIdentifiers``).
///
/// Header: stream id = volume id. Payload: bytes transferred u64 (for logs
/// and the progress report; not a correctness input).
public struct PeerResyncDone: PeerMessageCodable {
    public static let frameType = PeerFrameType.resyncDone

    public var volumeID: UInt32
    public var bytesSynced: UInt64

    public init(volumeID: UInt32, bytesSynced: UInt64) {
        self.volumeID = volumeID
        self.bytesSynced = bytesSynced
    }

    public var headerStreamID: UInt32 { volumeID }

    public func encodePayload(into out: inout [UInt8]) { out.appendBigEndian(bytesSynced) }

    public init(header: PeerFrameHeader, payload: ArraySlice<UInt8>) throws(PeerProtocolError) {
        try header.requireType(Self.frameType)
        try header.requireNoSequence()
        var r = PayloadReader(type: Self.frameType, bytes: payload)
        volumeID = header.streamID
        bytesSynced = try r.read(UInt64.self, "bytes synced")
        try r.finish()
    }
}
