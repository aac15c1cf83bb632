/// CHALLENGE: "your HELLO is acceptable; prove you hold the cluster key".
/// Sent after validating the peer's HELLO (cluster name, version overlap,
/// host name, nonce). It commits the sender to the negotiated version and
/// repeats the nonce it challenges with (its own HELLO nonce), so both sides
/// provably agree on the inputs of the RESPONSE before any MAC is computed.
///
/// Payload: negotiated version u16, nonce (32 bytes).
public struct PeerChallenge: PeerMessageCodable {
    public static let frameType = PeerFrameType.challenge

    public var version: UInt16
    public var nonce: [UInt8]

    public init(version: UInt16, nonce: [UInt8]) {
        precondition(nonce.count == PeerProtocol.nonceSize, "nonce must be \(PeerProtocol.nonceSize) bytes")
        self.version = version
        self.nonce = nonce
    }

    public func encodePayload(into out: inout [UInt8]) {
        out.appendBigEndian(version)
        out.append(contentsOf: nonce)
    }

    public init(header: PeerFrameHeader, payload: ArraySlice<UInt8>) throws(PeerProtocolError) {
        try header.requireType(Self.frameType)
        try header.requireNoStreamOrSequence()
        var r = PayloadReader(type: Self.frameType, bytes: payload)
        version = try r.read(UInt16.self, "version")
        nonce = Array(try r.readBytes(PeerProtocol.nonceSize, "nonce"))
        try r.finish()
    }
}
