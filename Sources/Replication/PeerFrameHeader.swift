import Volume

/// The fixed 32-byte header in front of every peer frame (`docs/protocol.md`).
///
/// ```
///  0  magic "VMHP"      u32     16  sequence          u64
///  4  version           u16     24  payload length    u32
///  6  type              u16     28  header CRC32C     u32 (over bytes 0..<28)
///  8  flags             u16
/// 10  reserved (0)      u16
/// 12  stream/volume id  u32
/// ```
///
/// The CRC covers the header only: it is what lets the decoder trust the length
/// before buffering a payload. Payload integrity is left to TCP's checksum
/// (see "Integrity" in the protocol document).
public struct PeerFrameHeader: Sendable, Hashable {
    public var version: UInt16
    public var type: PeerFrameType
    public var flags: PeerFrameFlags
    /// Which replicated volume the frame is about (0 for connection-level frames).
    public var streamID: UInt32
    /// Per-volume sequence number of replicated writes, or the sequence being
    /// acknowledged (ACK), or 0 where the type gives it no meaning.
    public var sequence: UInt64
    public var payloadLength: UInt32

    @inlinable
    public init(version: UInt16 = PeerProtocol.currentVersion, type: PeerFrameType, flags: PeerFrameFlags = [],
                streamID: UInt32 = 0, sequence: UInt64 = 0, payloadLength: UInt32) {
        self.version = version
        self.type = type
        self.flags = flags
        self.streamID = streamID
        self.sequence = sequence
        self.payloadLength = payloadLength
    }

    /// Appends the 32 encoded header bytes, CRC included.
    @inlinable
    public func encode(into out: inout [UInt8]) {
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: PeerProtocol.headerSize))
        out.withUnsafeMutableBytes { raw in
            store(into: UnsafeMutableRawBufferPointer(rebasing: raw[start..<(start + PeerProtocol.headerSize)]))
        }
    }

    /// Writes the 32 header bytes, CRC included, into `raw` (at least 32 bytes).
    @inlinable
    public func store(into raw: UnsafeMutableRawBufferPointer) {
        precondition(raw.count >= PeerProtocol.headerSize)
        raw.storeBytes(of: PeerProtocol.magic.bigEndian, toByteOffset: 0, as: UInt32.self)
        raw.storeBytes(of: version.bigEndian, toByteOffset: 4, as: UInt16.self)
        raw.storeBytes(of: type.rawValue.bigEndian, toByteOffset: 6, as: UInt16.self)
        raw.storeBytes(of: flags.rawValue.bigEndian, toByteOffset: 8, as: UInt16.self)
        raw.storeBytes(of: UInt16(0), toByteOffset: 10, as: UInt16.self)
        raw.storeBytes(of: streamID.bigEndian, toByteOffset: 12, as: UInt32.self)
        raw.storeBytes(of: sequence.bigEndian, toByteOffset: 16, as: UInt64.self)
        raw.storeBytes(of: payloadLength.bigEndian, toByteOffset: 24, as: UInt32.self)
        var crc = CRC32C()
        crc.update(UnsafeRawBufferPointer(rebasing: raw[0..<28]))
        raw.storeBytes(of: crc.value.bigEndian, toByteOffset: 28, as: UInt32.self)
    }

    /// The 32 encoded header bytes.
    @inlinable
    public var encoded: [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(PeerProtocol.headerSize)
        encode(into: &out)
        return out
    }

    /// Decodes and validates a header from exactly ``PeerProtocol/headerSize``
    /// bytes. The checks run in the order that makes each one meaningful: magic
    /// (is this our protocol at all), CRC (can any field be trusted), then the
    /// fields, and the payload length against both the type and `maximumPayloadLength`.
    public static func decode(_ raw: UnsafeRawBufferPointer, maximumPayloadLength: Int = PeerProtocol.maximumPayloadLength)
        throws(PeerProtocolError) -> PeerFrameHeader
    {
        precondition(raw.count >= PeerProtocol.headerSize)
        let magic: UInt32 = raw.readBigEndian(at: 0)
        guard magic == PeerProtocol.magic else { throw .badMagic(magic) }
        let stored: UInt32 = raw.readBigEndian(at: 28)
        var crc = CRC32C()
        crc.update(UnsafeRawBufferPointer(rebasing: raw[0..<28]))
        guard crc.value == stored else { throw .badHeaderChecksum(expected: crc.value, found: stored) }

        let version: UInt16 = raw.readBigEndian(at: 4)
        let rawType: UInt16 = raw.readBigEndian(at: 6)
        guard let type = PeerFrameType(rawValue: rawType) else { throw .unknownFrameType(rawType) }
        // Handshake frames keep header version 1 in every build, so any two builds can negotiate or refuse.
        guard PeerProtocol.supportedVersions.contains(version) || (type.isHandshake && version == PeerProtocol.handshakeFrameVersion)
        else { throw .unsupportedVersion(version) }
        let flags = PeerFrameFlags(rawValue: raw.readBigEndian(at: 8))
        guard flags.isSubset(of: type.allowedFlags) else {
            throw .invalidFlags(type: type, flags: flags.subtracting(type.allowedFlags).rawValue)
        }
        let reserved: UInt16 = raw.readBigEndian(at: 10)
        guard reserved == 0 else { throw .nonZeroReserved(reserved) }
        let length: UInt32 = raw.readBigEndian(at: 24)
        guard Int(length) <= maximumPayloadLength else {
            throw .payloadTooLarge(type: type, length: length, maximum: maximumPayloadLength)
        }
        let range = type.payloadLengthRange
        guard range.contains(Int(length)) else {
            throw .invalidPayloadLength(type: type, length: Int(length), expected: "\(range.lowerBound)...\(range.upperBound) bytes")
        }
        return PeerFrameHeader(version: version, type: type, flags: flags,
                               streamID: raw.readBigEndian(at: 12), sequence: raw.readBigEndian(at: 16),
                               payloadLength: length)
    }
}
