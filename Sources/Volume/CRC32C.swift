/// CRC-32C (Castagnoli), the checksum protecting every on-disk structure of a
/// volume: superblock copies and activity-log transactions.
///
/// Castagnoli rather than the zlib CRC-32 because it has better error
/// detection for the block sizes we checksum (4 KiB) and is what iSCSI, ext4,
/// btrfs and DRBD's metadata use, so external tools can verify our files.
///
/// The implementation is table driven with slicing-by-8: eight 256-entry
/// tables let the loop consume eight bytes per iteration with independent
/// table lookups, roughly 4–6× faster than the byte-at-a-time loop. A
/// hardware (SSE4.2 `crc32`) path is not used because it would need a C shim
/// or intrinsics; checksums are only on the metadata path, never per guest I/O.
///
/// ```swift
/// var crc = CRC32C()
/// crc.update(header)
/// crc.update(payload)
/// let value = crc.value
/// // or in one go:
/// let same = CRC32C.checksum(header + payload)
/// ```
public struct CRC32C: Sendable, Hashable {
    /// Reflected Castagnoli polynomial 0x1EDC6F41.
    @usableFromInline static let polynomial: UInt32 = 0x82F6_3B78

    /// `tables[k * 256 + b]` is the CRC contribution of byte `b` followed by `k` zero bytes.
    @usableFromInline static let tables: [UInt32] = {
        var t = [UInt32](repeating: 0, count: 8 * 256)
        for i in 0..<256 {
            var c = UInt32(i)
            for _ in 0..<8 {
                c = (c & 1) != 0 ? (c >> 1) ^ polynomial : c >> 1
            }
            t[i] = c
        }
        for k in 1..<8 {
            for i in 0..<256 {
                let prev = t[(k - 1) * 256 + i]
                t[k * 256 + i] = (prev >> 8) ^ t[Int(prev & 0xFF)]
            }
        }
        return t
    }()

    /// Internal running state (pre- and post-conditioned with all ones).
    @usableFromInline var state: UInt32 = 0xFFFF_FFFF

    /// Creates a checksum of the empty message.
    @inlinable public init() {}

    /// The checksum of all bytes fed so far.
    @inlinable public var value: UInt32 { state ^ 0xFFFF_FFFF }

    /// Feeds more bytes into the checksum.
    @inlinable
    public mutating func update(_ bytes: some Sequence<UInt8>) {
        let done: Void? = bytes.withContiguousStorageIfAvailable { buffer in
            self.update(UnsafeRawBufferPointer(buffer))
        }
        if done == nil {
            let copy = Array(bytes)
            copy.withUnsafeBytes { self.update($0) }
        }
    }

    /// Feeds more bytes into the checksum.
    @inlinable
    public mutating func update(_ buffer: UnsafeRawBufferPointer) {
        var crc = state
        CRC32C.tables.withUnsafeBufferPointer { t in
            var i = 0
            let n = buffer.count
            // Slicing-by-8 main loop: the eight lookups are independent, so
            // the CPU overlaps them.
            while n - i >= 8 {
                let lo = UInt32(buffer[i]) | UInt32(buffer[i + 1]) << 8
                    | UInt32(buffer[i + 2]) << 16 | UInt32(buffer[i + 3]) << 24
                let x = crc ^ lo
                crc = t[7 * 256 + Int(x & 0xFF)]
                    ^ t[6 * 256 + Int((x >> 8) & 0xFF)]
                    ^ t[5 * 256 + Int((x >> 16) & 0xFF)]
                    ^ t[4 * 256 + Int(x >> 24)]
                    ^ t[3 * 256 + Int(buffer[i + 4])]
                    ^ t[2 * 256 + Int(buffer[i + 5])]
                    ^ t[1 * 256 + Int(buffer[i + 6])]
                    ^ t[Int(buffer[i + 7])]
                i += 8
            }
            while i < n {
                crc = (crc >> 8) ^ t[Int((crc ^ UInt32(buffer[i])) & 0xFF)]
                i += 1
            }
        }
        state = crc
    }

    /// The CRC-32C of `bytes`.
    @inlinable
    public static func checksum(_ bytes: some Sequence<UInt8>) -> UInt32 {
        var crc = CRC32C()
        crc.update(bytes)
        return crc.value
    }
}
