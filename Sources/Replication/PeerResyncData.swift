/// RESYNC_DATA: one range of the sync source's data, or a marker that the
/// range reads as zeroes (so holes and zeroed regions cost 12 bytes on the
/// wire and the target can punch a hole instead of writing).
///
/// Header: stream id = volume id, sequence = request id (0 when the source
/// pushes without a request), flag ZEROES. Payload: offset u64, then either
/// data (1 byte … 32 MiB), or with ZEROES a length u32 (1 … 32 MiB).
public struct PeerResyncData: PeerMessageCodable {
    public static let frameType = PeerFrameType.resyncData

    public enum Content: Sendable, Hashable {
        /// A slice of the received frame's payload (no copy).
        case data(ArraySlice<UInt8>)
        /// Data received straight into an aligned buffer (same wire format as `data`).
        case block(ReceivedBlock)
        case zeroes(length: UInt32)

        public var length: Int {
            switch self {
            case .data(let d): return d.count
            case .block(let b): return b.bytes.count
            case .zeroes(let l): return Int(l)
            }
        }
    }

    public var volumeID: UInt32
    public var requestID: UInt64
    public var offset: UInt64
    public var content: Content

    public init(volumeID: UInt32, requestID: UInt64, offset: UInt64, content: Content) {
        self.volumeID = volumeID
        self.requestID = requestID
        self.offset = offset
        self.content = content
    }

    public var headerFlags: PeerFrameFlags {
        if case .zeroes = content { return .zeroes }
        return []
    }
    public var headerStreamID: UInt32 { volumeID }
    public var headerSequence: UInt64 { requestID }

    /// Bytes in front of the data: header (32) + offset (8).
    public static let prefixSize = PeerProtocol.headerSize + 8

    /// Header and offset of a RESYNC_DATA frame carrying `dataLength` bytes, for a sender that
    /// appends the data itself (one copy, straight from the read buffer).
    public static func encodePrefix(into out: inout [UInt8], version: UInt16 = PeerProtocol.currentVersion,
                                    volumeID: UInt32, requestID: UInt64, offset: UInt64, dataLength: Int) {
        precondition(dataLength > 0 && dataLength <= PeerProtocol.maximumDataLength, "RESYNC_DATA length out of range")
        PeerFrameHeader(version: version, type: .resyncData, flags: [], streamID: volumeID,
                        sequence: requestID, payloadLength: UInt32(8 + dataLength)).encode(into: &out)
        out.appendBigEndian(offset)
    }

    public func encodePayload(into out: inout [UInt8]) {
        out.appendBigEndian(offset)
        switch content {
        case .data(let d): out.append(contentsOf: d)
        case .block(let b): out.append(contentsOf: b.bytes)
        case .zeroes(let l): out.appendBigEndian(l)
        }
    }

    public init(header: PeerFrameHeader, payload: ArraySlice<UInt8>) throws(PeerProtocolError) {
        try header.requireType(Self.frameType)
        var r = PayloadReader(type: Self.frameType, bytes: payload)
        volumeID = header.streamID
        requestID = header.sequence
        offset = try r.read(UInt64.self, "offset")
        if header.flags.contains(.zeroes) {
            let length = try r.read(UInt32.self, "length")
            try r.finish()
            try checkDataRange(Self.frameType, offset: offset, length: length)
            content = .zeroes(length: length)
        } else {
            let data = r.readRest()
            try checkRange(Self.frameType, offset: offset, length: UInt64(data.count))
            content = .data(data)
        }
    }

    /// A RESYNC_DATA frame whose payload (`offset`, then the data) was received into `block`
    /// instead of through ``PeerFrameDecoder``; validated as ``init(header:payload:)`` does.
    init(header: PeerFrameHeader, offset: UInt64, block: ReceivedBlock) throws(PeerProtocolError) {
        try header.requireType(Self.frameType)
        precondition(!header.flags.contains(.zeroes), "a ZEROES frame carries no data")
        volumeID = header.streamID
        requestID = header.sequence
        self.offset = offset
        try checkRange(Self.frameType, offset: offset, length: UInt64(block.bytes.count))
        content = .block(block)
    }
}
