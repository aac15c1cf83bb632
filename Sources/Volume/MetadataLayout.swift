/// Where each region of a volume's metadata file lives. Pure arithmetic; the
/// caller does the I/O.
///
/// ```
/// 0        superblock copy A (4 KiB)
/// 4096     superblock copy B (4 KiB)
/// 8192     activity-log ring (slotCount × 4 KiB)
/// …        dirty bitmap (rounded up to 4 KiB)
/// ```
public struct MetadataLayout: Sendable, Hashable {
    public static let blockSize: UInt64 = 4096

    /// Offsets of the two superblock copies (A, B).
    public static let superblockOffsets: [UInt64] = [0, 4096]
    public let activityLogOffset: UInt64
    public let activityLogLength: UInt64
    public let bitmapOffset: UInt64
    /// Bytes reserved for the bitmap (multiple of 4 KiB).
    public let bitmapLength: UInt64
    /// Bytes of the serialized bitmap inside its region.
    public let bitmapUsedLength: UInt64
    /// Total size of the metadata file.
    public let fileSize: UInt64

    public init(volumeSize: UInt64, grainSize: UInt64, activityLogSlots: Int) {
        let block = Self.blockSize
        activityLogOffset = 2 * block
        activityLogLength = UInt64(activityLogSlots) * block
        bitmapOffset = activityLogOffset + activityLogLength
        bitmapUsedLength = UInt64(DirtyBitmap.serializedByteCount(volumeSize: volumeSize, grainSize: grainSize))
        bitmapLength = (bitmapUsedLength + block - 1) / block * block
        fileSize = bitmapOffset + bitmapLength
    }

    /// File offset of activity-log slot `slot`.
    public func activityLogSlotOffset(_ slot: Int) -> UInt64 {
        activityLogOffset + UInt64(slot) * Self.blockSize
    }

    /// File offset of bitmap block `index` (see ``DirtyBitmap/serializedBlock(_:blockSize:)``).
    public func bitmapBlockOffset(_ index: Int) -> UInt64 {
        bitmapOffset + UInt64(index) * Self.blockSize
    }
}
