/// WRITE: one replicated guest write (protocol C: the primary completes the
/// guest write only after the peer's ACK for `sequence`).
///
/// Header: stream id = volume id, sequence = per-volume write sequence,
/// flag FUA. Payload: offset u64, data (1 byte … 32 MiB).
///
/// `data` is a slice of the received frame's payload array: decoding does not
/// copy it. For sending without copying the data either, write
/// ``encodePrefix(into:volumeID:sequence:offset:fua:dataLength:)`` and the
/// data as two iovecs.
public struct PeerWrite: PeerMessageCodable {
    public static let frameType = PeerFrameType.write

    public var volumeID: UInt32
    public var sequence: UInt64
    public var offset: UInt64
    public var fua: Bool
    public var data: ArraySlice<UInt8>

    public init(volumeID: UInt32, sequence: UInt64, offset: UInt64, fua: Bool = false, data: ArraySlice<UInt8>) {
        self.volumeID = volumeID
        self.sequence = sequence
        self.offset = offset
        self.fua = fua
        self.data = data
    }

    public init(volumeID: UInt32, sequence: UInt64, offset: UInt64, fua: Bool = false, data: [UInt8]) {
        self.init(volumeID: volumeID, sequence: sequence, offset: offset, fua: fua, data: data[...])
    }

    public var headerFlags: PeerFrameFlags { fua ? .fua : [] }
    public var headerStreamID: UInt32 { volumeID }
    public var headerSequence: UInt64 { sequence }

    /// Bytes in front of the data: header (32) + offset (8).
    public static let prefixSize = PeerProtocol.headerSize + 8

    /// Appends header and offset of a WRITE whose `dataLength` data bytes the
    /// caller sends right after (e.g. `writev`/`sendmsg` with the guest buffer).
    @inlinable
    public static func encodePrefix(into out: inout [UInt8], version: UInt16 = PeerProtocol.currentVersion,
                                    volumeID: UInt32, sequence: UInt64, offset: UInt64, fua: Bool, dataLength: Int) {
        precondition(dataLength > 0 && dataLength <= PeerProtocol.maximumDataLength, "WRITE data length out of range")
        PeerFrameHeader(version: version, type: .write, flags: fua ? .fua : [], streamID: volumeID,
                        sequence: sequence, payloadLength: UInt32(8 + dataLength)).encode(into: &out)
        out.appendBigEndian(offset)
    }

    @inlinable
    public func encodePayload(into out: inout [UInt8]) {
        out.reserveCapacity(out.count + 8 + data.count)
        out.appendBigEndian(offset)
        out.append(contentsOf: data)
    }

    public init(header: PeerFrameHeader, payload: ArraySlice<UInt8>) throws(PeerProtocolError) {
        try header.requireType(Self.frameType)
        var r = PayloadReader(type: Self.frameType, bytes: payload)
        volumeID = header.streamID
        sequence = header.sequence
        fua = header.flags.contains(.fua)
        offset = try r.read(UInt64.self, "offset")
        data = r.readRest()
        try checkRange(Self.frameType, offset: offset, length: UInt64(data.count))
    }
}
