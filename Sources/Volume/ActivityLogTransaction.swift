/// One activity-log transaction: a 4 KiB block stored in slot
/// `sequence % slotCount` of the on-disk AL ring, holding the *complete* set of
/// hot extents after this transaction.
///
/// Storing the full set (rather than DRBD's deltas plus a rolling slice of the
/// table) makes recovery trivial — the newest valid block is the answer — and
/// costs nothing extra: one 4 KiB write either way, and 1014 extents fit.
///
/// Layout (little-endian), see `docs/format.md`:
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 8 | magic `"VMHA-AL\0"` |
/// | 8 | 4 | format version (1) |
/// | 12 | 4 | CRC32C of the whole block with this field zero |
/// | 16 | 8 | sequence number (monotonic, starts at 1) |
/// | 24 | 8 | volume tag (binds the ring to its volume) |
/// | 32 | 4 | log2(extent size) |
/// | 36 | 4 | number of extents `n` |
/// | 40 | 4·n | extent numbers, ascending |
/// | … | | zero |
public struct ActivityLogTransaction: Sendable, Hashable {
    public static let blockSize = 4096
    public static let magic: [UInt8] = Array("VMHA-AL\0".utf8)
    public static let formatVersion: UInt32 = 1
    static let headerSize = 40
    /// How many extent numbers fit into one block.
    public static let maximumExtents = (blockSize - headerSize) / 4

    /// Monotonic sequence number; the newest valid one wins at recovery.
    public var sequence: UInt64
    /// Ring slot to write ``bytes`` to: `sequence % slotCount`.
    public var slot: Int
    /// Extents that become hot once this transaction is durable.
    public var activated: [UInt32]
    /// Extents that stop being covered. Their bitmap bits must be durable
    /// *before* this transaction is written, or a crash would forget them.
    public var evicted: [UInt32]
    /// The full hot set recorded by this transaction (ascending).
    public var extents: [UInt32]
    /// The 4 KiB block to write.
    public var bytes: [UInt8]

    /// Encodes a transaction block.
    static func encode(sequence: UInt64, volumeTag: UInt64, extentShift: UInt32, extents: [UInt32]) -> [UInt8] {
        precondition(extents.count <= maximumExtents)
        var b = [UInt8]()
        b.reserveCapacity(blockSize)
        b.append(contentsOf: magic)
        b.appendLittleEndian(formatVersion)
        b.appendLittleEndian(UInt32(0))
        b.appendLittleEndian(sequence)
        b.appendLittleEndian(volumeTag)
        b.appendLittleEndian(extentShift)
        b.appendLittleEndian(UInt32(extents.count))
        for e in extents { b.appendLittleEndian(e) }
        b.append(contentsOf: repeatElement(0, count: blockSize - b.count))
        b.storeLittleEndian(CRC32C.checksum(b), at: 12)
        return b
    }

    /// Result of decoding one ring slot.
    enum Decoded: Equatable {
        /// Never written (all zero).
        case empty
        /// A valid transaction.
        case valid(sequence: UInt64, extents: [UInt32])
        /// Damaged, torn, foreign or from another format version.
        case invalid(String)
    }

    static func decode(_ b: ArraySlice<UInt8>, volumeTag: UInt64, extentShift: UInt32) -> Decoded {
        let block = Array(b)
        guard block.count == blockSize else { return .invalid("slot is \(block.count) bytes") }
        if block.allSatisfy({ $0 == 0 }) { return .empty }
        guard Array(block[0..<8]) == magic else { return .invalid("bad magic") }
        var zeroed = block
        zeroed.storeLittleEndian(UInt32(0), at: 12)
        let stored: UInt32 = block.readLittleEndian(at: 12)
        guard CRC32C.checksum(zeroed) == stored else { return .invalid("CRC mismatch (torn or corrupt)") }
        let version: UInt32 = block.readLittleEndian(at: 8)
        guard version == formatVersion else { return .invalid("unsupported AL format version \(version)") }
        guard block.readLittleEndian(at: 24, as: UInt64.self) == volumeTag else { return .invalid("belongs to another volume") }
        guard block.readLittleEndian(at: 32, as: UInt32.self) == extentShift else { return .invalid("different extent size") }
        let count = Int(block.readLittleEndian(at: 36, as: UInt32.self))
        guard count <= maximumExtents else { return .invalid("extent count \(count) too large") }
        let extents = (0..<count).map { block.readLittleEndian(at: headerSize + 4 * $0, as: UInt32.self) }
        return .valid(sequence: block.readLittleEndian(at: 16), extents: extents)
    }
}
