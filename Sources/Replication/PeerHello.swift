/// HELLO: the first frame each side sends. Its payload layout is frozen for
/// all protocol versions (and it is always sent with header version 1) so that
/// any two builds can at least negotiate, or refuse with a reason.
///
/// Payload: min version u16, max version u16, nonce (32 bytes),
/// host name (u16 length + UTF-8, 1–255 bytes), cluster name (same).
public struct PeerHello: PeerMessageCodable {
    public static let frameType = PeerFrameType.hello

    public var versions: ClosedRange<UInt16>
    /// Fresh random bytes; the peer's RESPONSE must be computed over them.
    public var nonce: [UInt8]
    public var hostName: String
    public var clusterName: String

    public init(versions: ClosedRange<UInt16>, nonce: [UInt8], hostName: String, clusterName: String) {
        precondition(nonce.count == PeerProtocol.nonceSize, "nonce must be \(PeerProtocol.nonceSize) bytes")
        self.versions = versions
        self.nonce = nonce
        self.hostName = hostName
        self.clusterName = clusterName
    }

    public func encodePayload(into out: inout [UInt8]) {
        out.appendBigEndian(versions.lowerBound)
        out.appendBigEndian(versions.upperBound)
        out.append(contentsOf: nonce)
        out.appendShortText(hostName)
        out.appendShortText(clusterName)
    }

    public init(header: PeerFrameHeader, payload: ArraySlice<UInt8>) throws(PeerProtocolError) {
        try header.requireType(Self.frameType)
        try header.requireNoStreamOrSequence()
        var r = PayloadReader(type: Self.frameType, bytes: payload)
        let low = try r.read(UInt16.self, "minimum version")
        let high = try r.read(UInt16.self, "maximum version")
        guard low <= high, low > 0 else {
            throw .fieldOutOfRange(type: Self.frameType, field: "version range", value: "\(low)...\(high)")
        }
        versions = low...high
        nonce = Array(try r.readBytes(PeerProtocol.nonceSize, "nonce"))
        hostName = try r.readText("host name", maximum: PeerProtocol.maximumNameLength, allowEmpty: false)
        clusterName = try r.readText("cluster name", maximum: PeerProtocol.maximumNameLength, allowEmpty: false)
        try r.finish()
    }
}
