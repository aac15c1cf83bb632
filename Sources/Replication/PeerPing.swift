/// PING / PONG: keepalive. The receiver of a PING answers a PONG with the same
/// token; any received frame counts as liveness (``PeerKeepalive``).
///
/// Payload: token u64 (e.g. the sender's clock, to measure round-trip time).
public struct PeerPing: PeerMessageCodable {
    public static let frameType = PeerFrameType.ping

    public var token: UInt64

    public init(token: UInt64) { self.token = token }

    public func encodePayload(into out: inout [UInt8]) { out.appendBigEndian(token) }

    public init(header: PeerFrameHeader, payload: ArraySlice<UInt8>) throws(PeerProtocolError) {
        try header.requireType(Self.frameType)
        token = try decodeTokenPayload(header, payload)
    }
}

/// PONG: the answer to a ``PeerPing``, echoing its token.
public struct PeerPong: PeerMessageCodable {
    public static let frameType = PeerFrameType.pong

    public var token: UInt64

    public init(token: UInt64) { self.token = token }

    public func encodePayload(into out: inout [UInt8]) { out.appendBigEndian(token) }

    public init(header: PeerFrameHeader, payload: ArraySlice<UInt8>) throws(PeerProtocolError) {
        try header.requireType(Self.frameType)
        token = try decodeTokenPayload(header, payload)
    }
}
