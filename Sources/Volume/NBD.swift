/// Wire constants of the NBD protocol (fixed newstyle negotiation and the
/// transmission phase with simple and structured replies). Numeric values are from the protocol
/// document `doc/proto.md` of the NetworkBlockDevice project; everything is
/// big-endian on the wire. See `docs/nbd.md` for the subset vmhad implements.
///
/// Code points are `RawRepresentable` structs rather than enums so that values
/// we do not know (a newer client's option, command or flag) can still be
/// carried, logged and answered with the right error.
public enum NBD {
    /// `"NBDMAGIC"`, first eight bytes of the server greeting.
    public static let nbdMagic: UInt64 = 0x4E42_444D_4147_4943
    /// `"IHAVEOPT"`, greeting newstyle marker and prefix of every option request.
    public static let optionMagic: UInt64 = 0x4948_4156_454F_5054
    /// Prefix of every option reply.
    public static let optionReplyMagic: UInt64 = 0x0003_E889_0455_65A9
    /// Prefix of every transmission request.
    public static let requestMagic: UInt32 = 0x2560_9513
    /// Prefix of every simple reply.
    public static let simpleReplyMagic: UInt32 = 0x6744_6698
    /// Prefix of every structured reply chunk.
    public static let structuredReplyMagic: UInt32 = 0x668E_33EF
    /// Length of a structured reply chunk's header.
    public static let structuredReplyHeaderSize = 20
    /// Length of a (compact) transmission request header.
    public static let requestHeaderSize = 28
    /// Length of a simple reply header.
    public static let simpleReplyHeaderSize = 16

    /// Handshake flags (16 bits) the server sends in its greeting.
    public struct HandshakeFlags: OptionSet, Sendable, Hashable {
        public var rawValue: UInt16
        public init(rawValue: UInt16) { self.rawValue = rawValue }
        public static let fixedNewstyle = HandshakeFlags(rawValue: 1 << 0)
        public static let noZeroes = HandshakeFlags(rawValue: 1 << 1)
    }

    /// Client flags (32 bits) the client answers the greeting with.
    public struct ClientFlags: OptionSet, Sendable, Hashable {
        public var rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let fixedNewstyle = ClientFlags(rawValue: 1 << 0)
        public static let noZeroes = ClientFlags(rawValue: 1 << 1)
    }

    /// Per-export transmission flags (16 bits) sent when an export is selected.
    public struct TransmissionFlags: OptionSet, Sendable, Hashable {
        public var rawValue: UInt16
        public init(rawValue: UInt16) { self.rawValue = rawValue }
        /// Always set; the server speaks the flags-aware protocol.
        public static let hasFlags = TransmissionFlags(rawValue: 1 << 0)
        public static let readOnly = TransmissionFlags(rawValue: 1 << 1)
        public static let sendFlush = TransmissionFlags(rawValue: 1 << 2)
        public static let sendFUA = TransmissionFlags(rawValue: 1 << 3)
        public static let rotational = TransmissionFlags(rawValue: 1 << 4)
        public static let sendTrim = TransmissionFlags(rawValue: 1 << 5)
        public static let sendWriteZeroes = TransmissionFlags(rawValue: 1 << 6)
        public static let sendDF = TransmissionFlags(rawValue: 1 << 7)
        public static let canMultiConn = TransmissionFlags(rawValue: 1 << 8)
        public static let sendResize = TransmissionFlags(rawValue: 1 << 9)
        public static let sendCache = TransmissionFlags(rawValue: 1 << 10)
        public static let sendFastZero = TransmissionFlags(rawValue: 1 << 11)
    }

    /// Option codes of the haggling phase.
    public struct Option: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        public var rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let exportName = Option(rawValue: 1)
        public static let abort = Option(rawValue: 2)
        public static let list = Option(rawValue: 3)
        public static let startTLS = Option(rawValue: 5)
        public static let info = Option(rawValue: 6)
        public static let go = Option(rawValue: 7)
        public static let structuredReply = Option(rawValue: 8)
        public static let listMetaContext = Option(rawValue: 9)
        public static let setMetaContext = Option(rawValue: 10)
        public static let extendedHeaders = Option(rawValue: 11)
        public var description: String {
            switch self {
            case .exportName: "NBD_OPT_EXPORT_NAME"
            case .abort: "NBD_OPT_ABORT"
            case .list: "NBD_OPT_LIST"
            case .startTLS: "NBD_OPT_STARTTLS"
            case .info: "NBD_OPT_INFO"
            case .go: "NBD_OPT_GO"
            case .structuredReply: "NBD_OPT_STRUCTURED_REPLY"
            case .listMetaContext: "NBD_OPT_LIST_META_CONTEXT"
            case .setMetaContext: "NBD_OPT_SET_META_CONTEXT"
            case .extendedHeaders: "NBD_OPT_EXTENDED_HEADERS"
            default: "option \(rawValue)"
            }
        }
    }

    /// Option reply types; values with bit 31 set are errors.
    public struct OptionReplyType: RawRepresentable, Sendable, Hashable {
        public var rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let ack = OptionReplyType(rawValue: 1)
        public static let server = OptionReplyType(rawValue: 2)
        public static let info = OptionReplyType(rawValue: 3)
        public static let metaContext = OptionReplyType(rawValue: 4)
        public static let errUnsupported = OptionReplyType(rawValue: 1 << 31 | 1)
        public static let errPolicy = OptionReplyType(rawValue: 1 << 31 | 2)
        public static let errInvalid = OptionReplyType(rawValue: 1 << 31 | 3)
        public static let errPlatform = OptionReplyType(rawValue: 1 << 31 | 4)
        public static let errTLSRequired = OptionReplyType(rawValue: 1 << 31 | 5)
        public static let errUnknown = OptionReplyType(rawValue: 1 << 31 | 6)
        public static let errShutdown = OptionReplyType(rawValue: 1 << 31 | 7)
        public static let errBlockSizeRequired = OptionReplyType(rawValue: 1 << 31 | 8)
        public static let errTooBig = OptionReplyType(rawValue: 1 << 31 | 9)
        public var isError: Bool { rawValue & (1 << 31) != 0 }
    }

    /// Structured reply chunk types (`NBD_REPLY_TYPE_*`).
    public struct ReplyType: RawRepresentable, Sendable, Hashable {
        public var rawValue: UInt16
        public init(rawValue: UInt16) { self.rawValue = rawValue }
        public static let none = ReplyType(rawValue: 0)
        public static let offsetData = ReplyType(rawValue: 1)
        public static let offsetHole = ReplyType(rawValue: 2)
        public static let blockStatus = ReplyType(rawValue: 5)
        public static let error = ReplyType(rawValue: 1 << 15 | 1)
    }

    /// `NBD_REPLY_FLAG_DONE`: the last chunk of a reply.
    public static let replyFlagDone: UInt16 = 1

    /// `base:allocation` extent flags.
    public static let stateHole: UInt32 = 1
    public static let stateZero: UInt32 = 2

    /// Information item types carried in `NBD_REP_INFO` replies.
    public struct InfoType: RawRepresentable, Sendable, Hashable {
        public var rawValue: UInt16
        public init(rawValue: UInt16) { self.rawValue = rawValue }
        public static let export = InfoType(rawValue: 0)
        public static let name = InfoType(rawValue: 1)
        public static let description = InfoType(rawValue: 2)
        public static let blockSize = InfoType(rawValue: 3)
    }

    /// Transmission-phase command types.
    public struct Command: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        public var rawValue: UInt16
        public init(rawValue: UInt16) { self.rawValue = rawValue }
        public static let read = Command(rawValue: 0)
        public static let write = Command(rawValue: 1)
        public static let disconnect = Command(rawValue: 2)
        public static let flush = Command(rawValue: 3)
        public static let trim = Command(rawValue: 4)
        public static let cache = Command(rawValue: 5)
        public static let writeZeroes = Command(rawValue: 6)
        public static let blockStatus = Command(rawValue: 7)
        public static let resize = Command(rawValue: 8)
        public var description: String {
            switch self {
            case .read: "NBD_CMD_READ"
            case .write: "NBD_CMD_WRITE"
            case .disconnect: "NBD_CMD_DISC"
            case .flush: "NBD_CMD_FLUSH"
            case .trim: "NBD_CMD_TRIM"
            case .cache: "NBD_CMD_CACHE"
            case .writeZeroes: "NBD_CMD_WRITE_ZEROES"
            case .blockStatus: "NBD_CMD_BLOCK_STATUS"
            case .resize: "NBD_CMD_RESIZE"
            default: "command \(rawValue)"
            }
        }
    }

    /// Per-request command flags.
    public struct CommandFlags: OptionSet, Sendable, Hashable {
        public var rawValue: UInt16
        public init(rawValue: UInt16) { self.rawValue = rawValue }
        public static let fua = CommandFlags(rawValue: 1 << 0)
        public static let noHole = CommandFlags(rawValue: 1 << 1)
        public static let doNotFragment = CommandFlags(rawValue: 1 << 2)
        public static let reqOne = CommandFlags(rawValue: 1 << 3)
        public static let fastZero = CommandFlags(rawValue: 1 << 4)
        public static let payloadLength = CommandFlags(rawValue: 1 << 5)
    }

    /// Error values of replies. These are the protocol's own numbers (equal to
    /// Linux errno values), not the host's errno.
    public struct ErrorCode: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        public var rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let none = ErrorCode(rawValue: 0)
        public static let eperm = ErrorCode(rawValue: 1)
        public static let eio = ErrorCode(rawValue: 5)
        public static let enomem = ErrorCode(rawValue: 12)
        public static let einval = ErrorCode(rawValue: 22)
        public static let enospc = ErrorCode(rawValue: 28)
        public static let eoverflow = ErrorCode(rawValue: 75)
        public static let enotsup = ErrorCode(rawValue: 95)
        public static let eshutdown = ErrorCode(rawValue: 108)

        /// Maps a Linux errno (e.g. a negated io_uring CQE result) to the NBD
        /// value to report. The spec asks for EDQUOT and EFBIG to become ENOSPC
        /// and read-only failures to be EPERM; anything without an NBD
        /// equivalent is reported as EIO, the generic "the disk failed".
        public init(linuxErrno errno: Int32) {
            switch errno {
            case 0: self = .none
            case 1, 13, 30: self = .eperm          // EPERM, EACCES, EROFS
            case 12: self = .enomem
            case 22: self = .einval
            case 27, 28, 122: self = .enospc       // EFBIG, ENOSPC, EDQUOT
            case 75: self = .eoverflow
            case 95: self = .enotsup               // EOPNOTSUPP
            case 108: self = .eshutdown
            default: self = .eio
            }
        }

        public var description: String {
            switch self {
            case .none: "OK"
            case .eperm: "EPERM"
            case .eio: "EIO"
            case .enomem: "ENOMEM"
            case .einval: "EINVAL"
            case .enospc: "ENOSPC"
            case .eoverflow: "EOVERFLOW"
            case .enotsup: "ENOTSUP"
            case .eshutdown: "ESHUTDOWN"
            default: "error \(rawValue)"
            }
        }
    }
}
