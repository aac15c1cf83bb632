/// WELCOME: "I verified your RESPONSE". A side is authenticated once it has
/// verified the peer's RESPONSE *and* received the peer's WELCOME; only then
/// may it send data frames. Empty payload.
public struct PeerWelcome: PeerMessageCodable {
    public static let frameType = PeerFrameType.welcome

    public init() {}

    public func encodePayload(into out: inout [UInt8]) {}

    public init(header: PeerFrameHeader, payload: ArraySlice<UInt8>) throws(PeerProtocolError) {
        try header.requireType(Self.frameType)
        try header.requireNoStreamOrSequence()
        try PayloadReader(type: Self.frameType, bytes: payload).finish()
    }
}
