/// A typed frame: knows its frame type, which header fields it uses, and how
/// to encode and strictly decode its payload.
///
/// Decoding is exact: every decoded message re-encodes to the very bytes it
/// came from (reserved bits zero, lengths exact, text valid UTF-8, header
/// fields a type does not use must be zero). That makes "decode then
/// re-encode" a cheap invariant for the fuzzer, and means two
/// implementations can never disagree about what a frame meant.
public protocol PeerMessageCodable: Sendable, Hashable {
    static var frameType: PeerFrameType { get }
    /// Header flags (must be within `frameType.allowedFlags`).
    var headerFlags: PeerFrameFlags { get }
    /// Header stream/volume id.
    var headerStreamID: UInt32 { get }
    /// Header sequence.
    var headerSequence: UInt64 { get }
    /// Appends the payload (without header).
    func encodePayload(into out: inout [UInt8])
    /// Decodes from a header already validated by ``PeerFrameHeader/decode(_:maximumPayloadLength:)``
    /// and exactly its payload.
    init(header: PeerFrameHeader, payload: ArraySlice<UInt8>) throws(PeerProtocolError)
}

extension PeerMessageCodable {
    public var headerFlags: PeerFrameFlags { [] }
    public var headerStreamID: UInt32 { 0 }
    public var headerSequence: UInt64 { 0 }

    /// Appends the whole frame (header and payload). The header is written last
    /// into reserved space, so the payload is encoded exactly once.
    @inlinable
    public func encode(into out: inout [UInt8], version: UInt16 = PeerProtocol.currentVersion) {
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: PeerProtocol.headerSize))
        encodePayload(into: &out)
        let header = PeerFrameHeader(
            version: version, type: Self.frameType, flags: headerFlags, streamID: headerStreamID,
            sequence: headerSequence, payloadLength: UInt32(out.count - start - PeerProtocol.headerSize))
        out.withUnsafeMutableBytes { raw in
            header.store(into: UnsafeMutableRawBufferPointer(rebasing: raw[start..<(start + PeerProtocol.headerSize)]))
        }
    }

    /// The whole frame as one array.
    @inlinable
    public func encoded(version: UInt16 = PeerProtocol.currentVersion) -> [UInt8] {
        var out = [UInt8]()
        encode(into: &out, version: version)
        return out
    }

    /// The frame as header + payload (what the decoder yields).
    public func frame(version: UInt16 = PeerProtocol.currentVersion) -> PeerFrame {
        var payload = [UInt8]()
        encodePayload(into: &payload)
        return PeerFrame(
            header: PeerFrameHeader(version: version, type: Self.frameType, flags: headerFlags, streamID: headerStreamID,
                                    sequence: headerSequence, payloadLength: UInt32(payload.count)),
            payload: payload)
    }
}

/// Decoding helpers shared by the message types.
extension PeerFrameHeader {
    /// Connection-level frames carry no stream id or sequence; anything else
    /// there would be lost on re-encoding, so it is rejected.
    func requireNoStreamOrSequence() throws(PeerProtocolError) {
        guard streamID == 0 else { throw .fieldOutOfRange(type: type, field: "stream id", value: "\(streamID)") }
        guard sequence == 0 else { throw .fieldOutOfRange(type: type, field: "sequence", value: "\(sequence)") }
    }

    func requireNoSequence() throws(PeerProtocolError) {
        guard sequence == 0 else { throw .fieldOutOfRange(type: type, field: "sequence", value: "\(sequence)") }
    }

    func requireType(_ expected: PeerFrameType) throws(PeerProtocolError) {
        guard type == expected else {
            throw .fieldOutOfRange(type: expected, field: "frame type", value: "\(type)")
        }
    }
}

/// The payload of WRITE_ZEROES and TRIM: offset u64, length u64 (> 0, no wrap).
func decodeRangePayload(_ type: PeerFrameType, _ payload: ArraySlice<UInt8>) throws(PeerProtocolError) -> (offset: UInt64, length: UInt64) {
    var r = PayloadReader(type: type, bytes: payload)
    let offset = try r.read(UInt64.self, "offset")
    let length = try r.read(UInt64.self, "length")
    try r.finish()
    try checkRange(type, offset: offset, length: length)
    return (offset, length)
}

/// A u32 data length (resync ranges): at most one maximum data block, and the range must not wrap.
func checkDataRange(_ type: PeerFrameType, offset: UInt64, length: UInt32) throws(PeerProtocolError) {
    guard length <= PeerProtocol.maximumDataLength else {
        throw .fieldOutOfRange(type: type, field: "length", value: "\(length)")
    }
    try checkRange(type, offset: offset, length: UInt64(length))
}

/// The payload of PING and PONG: a u64 token and nothing else.
func decodeTokenPayload(_ header: PeerFrameHeader, _ payload: ArraySlice<UInt8>) throws(PeerProtocolError) -> UInt64 {
    try header.requireNoStreamOrSequence()
    var r = PayloadReader(type: header.type, bytes: payload)
    let token = try r.read(UInt64.self, "token")
    try r.finish()
    return token
}

/// `offset + length` must not wrap: a wrapped range would alias the start of the volume.
func checkRange(_ type: PeerFrameType, offset: UInt64, length: UInt64) throws(PeerProtocolError) {
    guard length > 0 else { throw .fieldOutOfRange(type: type, field: "length", value: "0") }
    guard offset <= UInt64.max - length else {
        throw .fieldOutOfRange(type: type, field: "offset+length", value: "\(offset)+\(length)")
    }
}
