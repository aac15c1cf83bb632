/// RESPONSE: the sender's proof of the cluster key, an HMAC-SHA256 over the
/// transcript (see ``PeerHandshake`` and `docs/protocol.md`).
///
/// Payload: MAC (32 bytes).
public struct PeerResponse: PeerMessageCodable {
    public static let frameType = PeerFrameType.response

    public var mac: [UInt8]

    public init(mac: [UInt8]) {
        precondition(mac.count == PeerProtocol.nonceSize, "MAC must be 32 bytes")
        self.mac = mac
    }

    public func encodePayload(into out: inout [UInt8]) {
        out.append(contentsOf: mac)
    }

    public init(header: PeerFrameHeader, payload: ArraySlice<UInt8>) throws(PeerProtocolError) {
        try header.requireType(Self.frameType)
        try header.requireNoStreamOrSequence()
        var r = PayloadReader(type: Self.frameType, bytes: payload)
        mac = Array(try r.readBytes(PeerProtocol.nonceSize, "mac"))
        try r.finish()
    }
}
