/// A violation of the NBD protocol after which the connection cannot continue:
/// the caller sends whatever bytes were already produced and closes the socket.
public enum NBDProtocolError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The client set client-flag bits we did not advertise (spec: MUST drop the connection).
    case unknownClientFlags(UInt32)
    /// The client did not set `NBD_FLAG_C_FIXED_NEWSTYLE`; we only speak fixed newstyle.
    case clientNotFixedNewstyle
    /// An option request did not start with `IHAVEOPT`.
    case badOptionMagic(UInt64)
    /// `NBD_OPT_EXPORT_NAME` named an export we do not have; that option has no
    /// error reply, so the spec requires closing the connection.
    case unknownExport(String)
    /// `NBD_OPT_EXPORT_NAME` carried more data than any export name may have.
    case exportNameTooLong(UInt32)
    /// A transmission request did not start with the request magic.
    case badRequestMagic(UInt32)
    /// A WRITE announced a payload larger than the maximum block size. We cannot
    /// trust the length enough to skip that many bytes, so the spec allows (and we
    /// choose) closing the connection.
    case writePayloadTooLarge(length: UInt32, maximum: UInt32)
    /// Data arrived after the connection was already finished (aborted, failed,
    /// disconnected or handed over to transmission).
    case dataAfterEnd

    public var description: String {
        switch self {
        case .unknownClientFlags(let f):
            return "client sent unknown client flags 0x\(String(f, radix: 16))"
        case .clientNotFixedNewstyle:
            return "client does not support fixed newstyle negotiation"
        case .badOptionMagic(let m):
            return "option request has bad magic 0x\(String(m, radix: 16)) (expected IHAVEOPT)"
        case .unknownExport(let n):
            return "NBD_OPT_EXPORT_NAME requested unknown export '\(n)'"
        case .exportNameTooLong(let l):
            return "NBD_OPT_EXPORT_NAME name length \(l) exceeds 4096 bytes"
        case .badRequestMagic(let m):
            return "request has bad magic 0x\(String(m, radix: 16)) (expected 0x25609513)"
        case .writePayloadTooLarge(let l, let m):
            return "NBD_CMD_WRITE payload length \(l) exceeds maximum block size \(m)"
        case .dataAfterEnd:
            return "data received after the connection finished"
        }
    }
}
