/// ACK: completion of one WRITE / WRITE_ZEROES / TRIM / FLUSH on the peer.
///
/// Header: stream id = volume id, sequence = the acknowledged sequence.
/// Payload: status u32 — 0 on success, else a Linux errno (EIO, ENOSPC …)
/// that the primary maps onto the guest request or a disk-failure decision.
public struct PeerAck: PeerMessageCodable {
    public static let frameType = PeerFrameType.ack
    /// ACK frames are fixed-size: header + status.
    public static let encodedSize = PeerProtocol.headerSize + 4

    /// Status of a RESYNC_CHECKSUM answer: the block differs on the target (not an error).
    public static let checksumMismatch: UInt32 = 0xFFFF_FFFE

    public var volumeID: UInt32
    public var sequence: UInt64
    public var status: UInt32

    public init(volumeID: UInt32, sequence: UInt64, status: UInt32 = 0) {
        self.volumeID = volumeID
        self.sequence = sequence
        self.status = status
    }

    public var headerStreamID: UInt32 { volumeID }
    public var headerSequence: UInt64 { sequence }

    @inlinable
    public func encodePayload(into out: inout [UInt8]) { out.appendBigEndian(status) }

    public init(header: PeerFrameHeader, payload: ArraySlice<UInt8>) throws(PeerProtocolError) {
        try header.requireType(Self.frameType)
        var r = PayloadReader(type: Self.frameType, bytes: payload)
        volumeID = header.streamID
        sequence = header.sequence
        status = try r.read(UInt32.self, "status")
        try r.finish()
    }
}
