/// REFUSE: the handshake is over and failed; the sender closes after it.
/// Its layout is frozen like HELLO's.
///
/// Payload: reason u16, message (u16 length + UTF-8, ≤ 1024 bytes).
public struct PeerRefuse: PeerMessageCodable {
    public static let frameType = PeerFrameType.refuse

    /// Why the handshake was refused. Unknown values (from newer peers) are
    /// kept as they are.
    public struct Reason: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        public var rawValue: UInt16
        public init(rawValue: UInt16) { self.rawValue = rawValue }

        /// No protocol version in common.
        public static let incompatibleVersion = Reason(rawValue: 1)
        /// The peer belongs to another cluster.
        public static let clusterMismatch = Reason(rawValue: 2)
        /// The peer's RESPONSE did not verify (wrong cluster key, or a replay).
        public static let authenticationFailed = Reason(rawValue: 3)
        /// The peer used our own nonce or host name: a reflection attempt or a loop to ourselves.
        public static let reflected = Reason(rawValue: 4)
        /// The peer is not the host we are configured to replicate with.
        public static let unexpectedPeer = Reason(rawValue: 5)
        /// The peer sent a malformed or out-of-order frame.
        public static let protocolViolation = Reason(rawValue: 6)

        public var description: String {
            switch self {
            case .incompatibleVersion: return "incompatible version"
            case .clusterMismatch: return "cluster mismatch"
            case .authenticationFailed: return "authentication failed"
            case .reflected: return "reflected challenge"
            case .unexpectedPeer: return "unexpected peer"
            case .protocolViolation: return "protocol violation"
            default: return "reason \(rawValue)"
            }
        }
    }

    public var reason: Reason
    public var message: String

    public init(reason: Reason, message: String) {
        self.reason = reason
        // Keep the encoding within bounds whatever the caller wrote.
        var text = message
        while text.utf8.count > PeerProtocol.maximumMessageLength { text.removeLast() }
        self.message = text
    }

    public func encodePayload(into out: inout [UInt8]) {
        out.appendBigEndian(reason.rawValue)
        out.appendShortText(message)
    }

    public init(header: PeerFrameHeader, payload: ArraySlice<UInt8>) throws(PeerProtocolError) {
        try header.requireType(Self.frameType)
        try header.requireNoStreamOrSequence()
        var r = PayloadReader(type: Self.frameType, bytes: payload)
        reason = Reason(rawValue: try r.read(UInt16.self, "reason"))
        message = try r.readText("message", maximum: PeerProtocol.maximumMessageLength, allowEmpty: true)
        try r.finish()
    }
}
