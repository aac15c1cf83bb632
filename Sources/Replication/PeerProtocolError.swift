/// A violation of the peer protocol after which the byte stream cannot be
/// trusted any more. The caller drops the connection; nothing decoded from the
/// offending frame has been applied (frames are validated whole before they are
/// handed out).
public enum PeerProtocolError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The first four bytes of a frame header were not "VMHP".
    case badMagic(UInt32)
    /// The header CRC32C did not match: the header (and so its length) is garbage.
    case badHeaderChecksum(expected: UInt32, found: UInt32)
    /// The header's protocol version is outside what this build understands.
    case unsupportedVersion(UInt16)
    /// A frame type this build does not know.
    case unknownFrameType(UInt16)
    /// The reserved header field was not zero.
    case nonZeroReserved(UInt16)
    /// Flag bits that are not defined for this frame type.
    case invalidFlags(type: PeerFrameType, flags: UInt16)
    /// A payload longer than the decoder's limit; rejected before buffering it.
    case payloadTooLarge(type: PeerFrameType, length: UInt32, maximum: Int)
    /// A payload length that this frame type can never have (fixed-size frames).
    case invalidPayloadLength(type: PeerFrameType, length: Int, expected: String)
    /// A payload ended before all of its fields were read.
    case truncatedPayload(type: PeerFrameType, field: String)
    /// A payload had bytes left after its last field.
    case trailingBytes(type: PeerFrameType, count: Int)
    /// A field held a value outside its allowed range.
    case fieldOutOfRange(type: PeerFrameType, field: String, value: String)
    /// A text field was not valid UTF-8.
    case invalidText(type: PeerFrameType, field: String)

    public var description: String {
        switch self {
        case .badMagic(let m):
            return "frame header has bad magic 0x\(String(m, radix: 16)) (expected 0x564d4850 \"VMHP\")"
        case .badHeaderChecksum(let e, let f):
            return "frame header CRC32C mismatch: computed 0x\(String(e, radix: 16)), header says 0x\(String(f, radix: 16))"
        case .unsupportedVersion(let v):
            return "frame header protocol version \(v) is not supported (\(PeerProtocol.supportedVersions))"
        case .unknownFrameType(let t):
            return "unknown frame type \(t)"
        case .nonZeroReserved(let r):
            return "frame header reserved field is 0x\(String(r, radix: 16)), must be zero"
        case .invalidFlags(let t, let f):
            return "\(t) frame has undefined flags 0x\(String(f, radix: 16))"
        case .payloadTooLarge(let t, let l, let m):
            return "\(t) frame payload length \(l) exceeds maximum \(m)"
        case .invalidPayloadLength(let t, let l, let e):
            return "\(t) frame payload length \(l) is invalid (expected \(e))"
        case .truncatedPayload(let t, let f):
            return "\(t) frame payload ends before field '\(f)'"
        case .trailingBytes(let t, let c):
            return "\(t) frame payload has \(c) unexpected trailing bytes"
        case .fieldOutOfRange(let t, let f, let v):
            return "\(t) frame field '\(f)' has out-of-range value \(v)"
        case .invalidText(let t, let f):
            return "\(t) frame field '\(f)' is not valid UTF-8"
        }
    }
}
