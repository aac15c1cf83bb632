/// GOODBYE: orderly close after authentication ("shutting down", "demoted",
/// ...); the receiver stops sending, finishes nothing new, and closes.
///
/// Payload: reason u16 (free for the caller; 0 = normal shutdown),
/// message (u16 length + UTF-8, ≤ 1024 bytes).
public struct PeerGoodbye: PeerMessageCodable {
    public static let frameType = PeerFrameType.goodbye

    public var reason: UInt16
    public var message: String

    public init(reason: UInt16 = 0, message: String) {
        self.reason = reason
        var text = message
        while text.utf8.count > PeerProtocol.maximumMessageLength { text.removeLast() }
        self.message = text
    }

    public func encodePayload(into out: inout [UInt8]) {
        out.appendBigEndian(reason)
        out.appendShortText(message)
    }

    public init(header: PeerFrameHeader, payload: ArraySlice<UInt8>) throws(PeerProtocolError) {
        try header.requireType(Self.frameType)
        try header.requireNoStreamOrSequence()
        var r = PayloadReader(type: Self.frameType, bytes: payload)
        reason = try r.read(UInt16.self, "reason")
        message = try r.readText("message", maximum: PeerProtocol.maximumMessageLength, allowEmpty: true)
        try r.finish()
    }
}
