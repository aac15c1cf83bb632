/// Every peer frame as a typed value: the ``PeerFrameDecoder`` yields
/// ``PeerFrame``s, ``init(frame:)`` turns one into a message (or throws a
/// ``PeerProtocolError`` that drops the connection), ``encode(into:version:)``
/// goes the other way.
///
/// Decoding validates the whole payload before returning, so a caller never
/// sees (and never applies) half of a malformed frame.
public enum PeerMessage: Sendable, Hashable {
    case hello(PeerHello)
    case challenge(PeerChallenge)
    case response(PeerResponse)
    case welcome(PeerWelcome)
    case refuse(PeerRefuse)
    case volumeState(PeerVolumeState)
    case write(PeerWrite)
    case writeZeroes(PeerWriteZeroes)
    case trim(PeerTrim)
    case flush(PeerFlush)
    case ack(PeerAck)
    case resyncRequest(PeerResyncRequest)
    case resyncData(PeerResyncData)
    case resyncChecksum(PeerResyncChecksum)
    case resyncDone(PeerResyncDone)
    case bitmap(PeerBitmap)
    case ping(PeerPing)
    case pong(PeerPong)
    case goodbye(PeerGoodbye)
    case supportRequest(PeerSupportRequest)
    case supportData(PeerSupportData)

    /// Decodes the payload of a validated frame. Data-carrying messages
    /// (WRITE, RESYNC_DATA, BITMAP) slice the frame's payload array without copying.
    public init(frame: PeerFrame) throws(PeerProtocolError) {
        let h = frame.header
        let p = frame.payload[...]
        switch h.type {
        case .hello: self = .hello(try PeerHello(header: h, payload: p))
        case .challenge: self = .challenge(try PeerChallenge(header: h, payload: p))
        case .response: self = .response(try PeerResponse(header: h, payload: p))
        case .welcome: self = .welcome(try PeerWelcome(header: h, payload: p))
        case .refuse: self = .refuse(try PeerRefuse(header: h, payload: p))
        case .volumeState: self = .volumeState(try PeerVolumeState(header: h, payload: p))
        case .write: self = .write(try PeerWrite(header: h, payload: p))
        case .writeZeroes: self = .writeZeroes(try PeerWriteZeroes(header: h, payload: p))
        case .trim: self = .trim(try PeerTrim(header: h, payload: p))
        case .flush: self = .flush(try PeerFlush(header: h, payload: p))
        case .ack: self = .ack(try PeerAck(header: h, payload: p))
        case .resyncRequest: self = .resyncRequest(try PeerResyncRequest(header: h, payload: p))
        case .resyncData: self = .resyncData(try PeerResyncData(header: h, payload: p))
        case .resyncChecksum: self = .resyncChecksum(try PeerResyncChecksum(header: h, payload: p))
        case .resyncDone: self = .resyncDone(try PeerResyncDone(header: h, payload: p))
        case .bitmap: self = .bitmap(try PeerBitmap(header: h, payload: p))
        case .ping: self = .ping(try PeerPing(header: h, payload: p))
        case .pong: self = .pong(try PeerPong(header: h, payload: p))
        case .goodbye: self = .goodbye(try PeerGoodbye(header: h, payload: p))
        case .supportRequest: self = .supportRequest(try PeerSupportRequest(header: h, payload: p))
        case .supportData: self = .supportData(try PeerSupportData(header: h, payload: p))
        }
    }

    /// The frame type of this message.
    public var frameType: PeerFrameType {
        switch self {
        case .hello: return .hello
        case .challenge: return .challenge
        case .response: return .response
        case .welcome: return .welcome
        case .refuse: return .refuse
        case .volumeState: return .volumeState
        case .write: return .write
        case .writeZeroes: return .writeZeroes
        case .trim: return .trim
        case .flush: return .flush
        case .ack: return .ack
        case .resyncRequest: return .resyncRequest
        case .resyncData: return .resyncData
        case .resyncChecksum: return .resyncChecksum
        case .resyncDone: return .resyncDone
        case .bitmap: return .bitmap
        case .ping: return .ping
        case .pong: return .pong
        case .goodbye: return .goodbye
        case .supportRequest: return .supportRequest
        case .supportData: return .supportData
        }
    }

    /// Appends the whole encoded frame.
    public func encode(into out: inout [UInt8], version: UInt16 = PeerProtocol.currentVersion) {
        switch self {
        case .hello(let m): m.encode(into: &out, version: version)
        case .challenge(let m): m.encode(into: &out, version: version)
        case .response(let m): m.encode(into: &out, version: version)
        case .welcome(let m): m.encode(into: &out, version: version)
        case .refuse(let m): m.encode(into: &out, version: version)
        case .volumeState(let m): m.encode(into: &out, version: version)
        case .write(let m): m.encode(into: &out, version: version)
        case .writeZeroes(let m): m.encode(into: &out, version: version)
        case .trim(let m): m.encode(into: &out, version: version)
        case .flush(let m): m.encode(into: &out, version: version)
        case .ack(let m): m.encode(into: &out, version: version)
        case .resyncRequest(let m): m.encode(into: &out, version: version)
        case .resyncData(let m): m.encode(into: &out, version: version)
        case .resyncChecksum(let m): m.encode(into: &out, version: version)
        case .resyncDone(let m): m.encode(into: &out, version: version)
        case .bitmap(let m): m.encode(into: &out, version: version)
        case .ping(let m): m.encode(into: &out, version: version)
        case .pong(let m): m.encode(into: &out, version: version)
        case .goodbye(let m): m.encode(into: &out, version: version)
        case .supportRequest(let m): m.encode(into: &out, version: version)
        case .supportData(let m): m.encode(into: &out, version: version)
        }
    }

    /// The whole encoded frame.
    public func encoded(version: UInt16 = PeerProtocol.currentVersion) -> [UInt8] {
        var out = [UInt8]()
        encode(into: &out, version: version)
        return out
    }

    /// The message as header + payload, as ``PeerFrameDecoder`` would yield it.
    public func frame(version: UInt16 = PeerProtocol.currentVersion) -> PeerFrame {
        switch self {
        case .hello(let m): return m.frame(version: version)
        case .challenge(let m): return m.frame(version: version)
        case .response(let m): return m.frame(version: version)
        case .welcome(let m): return m.frame(version: version)
        case .refuse(let m): return m.frame(version: version)
        case .volumeState(let m): return m.frame(version: version)
        case .write(let m): return m.frame(version: version)
        case .writeZeroes(let m): return m.frame(version: version)
        case .trim(let m): return m.frame(version: version)
        case .flush(let m): return m.frame(version: version)
        case .ack(let m): return m.frame(version: version)
        case .resyncRequest(let m): return m.frame(version: version)
        case .resyncData(let m): return m.frame(version: version)
        case .resyncChecksum(let m): return m.frame(version: version)
        case .resyncDone(let m): return m.frame(version: version)
        case .bitmap(let m): return m.frame(version: version)
        case .ping(let m): return m.frame(version: version)
        case .pong(let m): return m.frame(version: version)
        case .goodbye(let m): return m.frame(version: version)
        case .supportRequest(let m): return m.frame(version: version)
        case .supportData(let m): return m.frame(version: version)
        }
    }
}
