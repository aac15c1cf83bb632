/// The type of a peer frame (header bytes 6–7). Values are grouped by purpose
/// so a packet capture is readable: 1–15 handshake, 16–31 replication,
/// 32–47 resync, 48–63 connection management, 64–79 support.
public enum PeerFrameType: UInt16, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case hello = 1
    case challenge = 2
    case response = 3
    case welcome = 4
    case refuse = 5

    case volumeState = 16
    case write = 17
    case writeZeroes = 18
    case trim = 19
    case flush = 20
    case ack = 21

    case resyncRequest = 32
    case resyncData = 33
    case resyncChecksum = 34
    case resyncDone = 35
    case bitmap = 36

    case ping = 48
    case pong = 49
    case goodbye = 50

    case supportRequest = 64
    case supportData = 65

    public var description: String {
        switch self {
        case .hello: return "HELLO"
        case .challenge: return "CHALLENGE"
        case .response: return "RESPONSE"
        case .welcome: return "WELCOME"
        case .refuse: return "REFUSE"
        case .volumeState: return "VOLUME_STATE"
        case .write: return "WRITE"
        case .writeZeroes: return "WRITE_ZEROES"
        case .trim: return "TRIM"
        case .flush: return "FLUSH"
        case .ack: return "ACK"
        case .resyncRequest: return "RESYNC_REQUEST"
        case .resyncData: return "RESYNC_DATA"
        case .resyncChecksum: return "RESYNC_CHECKSUM"
        case .resyncDone: return "RESYNC_DONE"
        case .bitmap: return "BITMAP"
        case .ping: return "PING"
        case .pong: return "PONG"
        case .goodbye: return "GOODBYE"
        case .supportRequest: return "SUPPORT_REQUEST"
        case .supportData: return "SUPPORT_DATA"
        }
    }

    /// Frames allowed before both sides have authenticated each other.
    public var isHandshake: Bool { rawValue < 16 }

    /// Header flag bits defined for this type; any other bit is a protocol error.
    public var allowedFlags: PeerFrameFlags {
        switch self {
        case .write, .trim: return .fua
        case .writeZeroes: return [.fua, .noHole]
        case .resyncData: return .zeroes
        default: return []
        }
    }

    /// The payload lengths this type can have, checked on the header alone so a
    /// fixed-size frame can never make the decoder buffer megabytes.
    public var payloadLengthRange: ClosedRange<Int> {
        let names = 2 * (2 + PeerProtocol.maximumNameLength)
        switch self {
        case .hello: return (4 + PeerProtocol.nonceSize + 4)...(4 + PeerProtocol.nonceSize + names)
        case .challenge: return (2 + PeerProtocol.nonceSize)...(2 + PeerProtocol.nonceSize)
        case .response: return PeerProtocol.nonceSize...PeerProtocol.nonceSize
        case .welcome: return 0...0
        case .refuse, .goodbye: return 4...(4 + PeerProtocol.maximumMessageLength)
        case .volumeState: return PeerVolumeState.fixedSize...(PeerVolumeState.fixedSize + PeerProtocol.maximumNameLength)
        case .write: return 9...(8 + PeerProtocol.maximumDataLength)
        case .writeZeroes, .trim: return 16...16
        case .flush: return 0...0
        case .ack: return 4...4
        case .resyncRequest: return 12...12
        // Either 8 + data, or 8 + u32 length when the ZEROES flag is set.
        case .resyncData: return 9...(8 + PeerProtocol.maximumDataLength)
        case .resyncChecksum: return (16 + 4)...(16 + 32)
        case .resyncDone: return 8...8
        case .bitmap: return 16...(16 + PeerProtocol.maximumDataLength)
        case .ping, .pong: return 8...8
        case .supportRequest: return 8...8
        case .supportData: return 16...(16 + PeerProtocol.maximumDataLength)
        }
    }
}

/// Header flag bits (bytes 8–9). Which bits a type may carry is
/// ``PeerFrameType/allowedFlags``.
public struct PeerFrameFlags: OptionSet, Sendable, Hashable {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// WRITE / WRITE_ZEROES / TRIM: the peer must make the data durable before it ACKs.
    public static let fua = PeerFrameFlags(rawValue: 1 << 0)
    /// WRITE_ZEROES: the peer must allocate (not punch a hole).
    public static let noHole = PeerFrameFlags(rawValue: 1 << 1)
    /// RESYNC_DATA: the range reads as zeroes (or is a hole); no data follows.
    public static let zeroes = PeerFrameFlags(rawValue: 1 << 2)
}
