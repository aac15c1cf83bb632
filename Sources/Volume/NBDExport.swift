/// What the server tells a client about one export, and the limits the
/// request decoder enforces for it.
public struct NBDExport: Sendable, Hashable {
    /// Block-size constraints sent as `NBD_INFO_BLOCK_SIZE`.
    public struct BlockSizes: Sendable, Hashable {
        /// Requests must be aligned to this (offset and length); power of two, 1…64 KiB.
        public var minimum: UInt32
        /// The size the client should prefer; power of two, ≥ max(minimum, 512).
        public var preferred: UInt32
        /// Largest READ/WRITE payload; a multiple of `minimum`.
        public var maximum: UInt32

        /// 512 / 4 KiB / 32 MiB: QEMU's sector size, the page size our image
        /// files are written at, and the largest payload we buffer per request.
        public static let `default` = BlockSizes(minimum: 512, preferred: 4096, maximum: 32 << 20)

        public init(minimum: UInt32, preferred: UInt32, maximum: UInt32) {
            self.minimum = minimum
            self.preferred = preferred
            self.maximum = maximum
        }
    }

    /// Errors in an export definition.
    public enum ConfigurationError: Error, Sendable, Hashable, CustomStringConvertible {
        case nameTooLong(Int)
        case descriptionTooLong(Int)
        case invalidBlockSizes(minimum: UInt32, preferred: UInt32, maximum: UInt32)
        public var description: String {
            switch self {
            case .nameTooLong(let n): "export name is \(n) bytes; NBD strings are at most 4096"
            case .descriptionTooLong(let n): "export description is \(n) bytes; NBD strings are at most 4096"
            case .invalidBlockSizes(let a, let b, let c):
                "invalid block sizes min \(a) preferred \(b) max \(c): min and preferred must be powers of two, min <= 64 KiB, preferred >= max(min, 512), max a multiple of min and >= preferred"
            }
        }
    }

    /// Export name the client selects (`""` is the spec's "default export").
    public var name: String
    /// Optional human readable description (`NBD_INFO_DESCRIPTION`, `NBD_OPT_LIST`).
    public var description: String?
    /// Export size in bytes.
    public var size: UInt64
    /// Transmission flags; `hasFlags` is always added.
    public var flags: NBD.TransmissionFlags
    public var blockSizes: BlockSizes

    /// The flags vmhad advertises for a writable replicated volume: flush, FUA,
    /// trim, write-zeroes (+fast zero) and multi-conn (all connections share the
    /// one io_uring engine and no cache, so a flush on one is visible on all).
    public static let defaultFlags: NBD.TransmissionFlags = [
        .hasFlags, .sendFlush, .sendFUA, .sendTrim, .sendWriteZeroes, .sendFastZero, .canMultiConn,
    ]

    public init(
        name: String, description: String? = nil, size: UInt64,
        flags: NBD.TransmissionFlags = NBDExport.defaultFlags,
        blockSizes: BlockSizes = .default
    ) throws(ConfigurationError) {
        guard name.utf8.count <= 4096 else { throw .nameTooLong(name.utf8.count) }
        if let d = description, d.utf8.count > 4096 { throw .descriptionTooLong(d.utf8.count) }
        let b = blockSizes
        func pow2(_ v: UInt32) -> Bool { v != 0 && v & (v - 1) == 0 }
        guard pow2(b.minimum), b.minimum <= 64 << 10, pow2(b.preferred),
              b.preferred >= max(b.minimum, 512), b.maximum >= b.preferred, b.maximum % b.minimum == 0
        else { throw .invalidBlockSizes(minimum: b.minimum, preferred: b.preferred, maximum: b.maximum) }
        self.name = name
        self.description = description
        self.size = size
        self.flags = flags.union(.hasFlags)
        self.blockSizes = blockSizes
    }
}
