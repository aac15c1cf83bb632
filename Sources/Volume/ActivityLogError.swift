/// Errors from configuring or driving an ``ActivityLog``.
public enum ActivityLogError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Extent size must be a power of two of at least 64 KiB.
    case invalidExtentSize(UInt64)
    /// Hot-extent limit must be in 16…``ActivityLogTransaction/maximumExtents``:
    /// at least as many as one maximal (32 MiB) write can touch, and no more than
    /// fit into one 4 KiB transaction.
    case invalidHotExtentLimit(Int)
    /// The on-disk ring needs at least two slots so that writing the newest
    /// transaction never overwrites the previous one.
    case invalidSlotCount(Int)
    /// The volume has more extents than a UInt32 extent number can name.
    case volumeTooLarge(UInt64)
    /// The write range lies outside the volume.
    case rangeOutOfBounds(offset: UInt64, length: UInt64, volumeSize: UInt64)
    /// ``ActivityLog/transactionDidComplete(sequence:)`` named a transaction that is not in flight.
    case noSuchTransaction(UInt64)
    /// ``ActivityLog/completeWrite(offset:length:)`` for a range with no write in flight.
    case writeNotInFlight(offset: UInt64, length: UInt64)

    public var description: String {
        switch self {
        case .invalidExtentSize(let s): "invalid AL extent size \(s): must be a power of two >= 64 KiB"
        case .invalidHotExtentLimit(let n): "invalid AL hot extent limit \(n): must be 16...\(ActivityLogTransaction.maximumExtents)"
        case .invalidSlotCount(let n): "invalid AL slot count \(n): must be >= 2"
        case .volumeTooLarge(let s): "volume size \(s) has too many AL extents for 32-bit extent numbers"
        case .rangeOutOfBounds(let o, let l, let s): "write offset \(o) length \(l) exceeds volume size \(s)"
        case .noSuchTransaction(let q): "AL transaction \(q) is not in flight"
        case .writeNotInFlight(let o, let l): "no AL reference held for write offset \(o) length \(l)"
        }
    }
}
