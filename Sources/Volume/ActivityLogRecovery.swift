/// What the activity-log ring says after an unclean stop: the hot extents of
/// the newest valid transaction. Every write that may have been in flight at
/// the crash lies inside one of them, so the caller marks them dirty in the
/// bitmap (``markDirty(in:)``) before anything else touches the volume.
public struct ActivityLogRecovery: Sendable, Hashable {
    /// Hot extents of the newest valid transaction (empty if none was valid).
    public var extents: [UInt32]
    /// Sequence number of that transaction; `nil` if no slot held a valid one.
    public var sequence: UInt64?
    /// Extent size the ring was written with.
    public var extentSize: UInt64
    /// Slots holding a valid transaction.
    public var validSlots: Int
    /// Slots that were neither empty nor valid (torn, corrupt, foreign), with why.
    public var invalidSlots: [(slot: Int, reason: String)]

    /// `true` when no slot was valid. For a ring that has been written before,
    /// this means the AL is lost and the caller must assume the whole volume
    /// may be dirty (full resync); for a fresh volume it is expected.
    public var foundNoValidTransaction: Bool { sequence == nil }

    /// Scans a raw ring (`slotCount` × 4 KiB) for the newest valid transaction.
    /// Torn or corrupt slots are skipped and reported; so is a valid block that
    /// sits in the wrong slot for its sequence number (a misdirected write).
    public init(ring: [UInt8], slotCount: Int, volumeTag: UInt64, extentSize: UInt64) {
        let shift = UInt32(extentSize.trailingZeroBitCount)
        self.extentSize = extentSize
        self.extents = []
        self.sequence = nil
        self.validSlots = 0
        self.invalidSlots = []
        let size = ActivityLogTransaction.blockSize
        for slot in 0..<slotCount {
            let lower = slot * size
            guard lower + size <= ring.count else {
                invalidSlots.append((slot, "ring truncated"))
                continue
            }
            switch ActivityLogTransaction.decode(ring[lower..<(lower + size)], volumeTag: volumeTag, extentShift: shift) {
            case .empty:
                continue
            case .invalid(let reason):
                invalidSlots.append((slot, reason))
            case .valid(let seq, let ext):
                guard seq % UInt64(slotCount) == UInt64(slot) else {
                    invalidSlots.append((slot, "sequence \(seq) does not belong in this slot"))
                    continue
                }
                validSlots += 1
                if sequence.map({ seq > $0 }) ?? true {
                    sequence = seq
                    extents = ext
                }
            }
        }
    }

    /// Sets the bitmap bits of every recovered extent (clipped to the volume).
    public func markDirty(in bitmap: inout DirtyBitmap) {
        for e in extents {
            let offset = UInt64(e) * extentSize
            guard offset < bitmap.volumeSize else { continue }
            let length = min(extentSize, bitmap.volumeSize - offset)
            try? bitmap.set(offset: offset, length: length)  // in range by construction
        }
    }

    public static func == (a: Self, b: Self) -> Bool {
        a.extents == b.extents && a.sequence == b.sequence && a.extentSize == b.extentSize
            && a.validSlots == b.validSlots && a.invalidSlots.map(\.slot) == b.invalidSlots.map(\.slot)
    }

    public func hash(into h: inout Hasher) {
        h.combine(extents)
        h.combine(sequence)
    }
}
