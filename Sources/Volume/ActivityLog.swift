/// DRBD-style activity log: the bounded set of "hot" extents in which writes
/// may be in flight, made durable *before* those writes are issued.
///
/// After a crash of the primary, any write that was in flight may have
/// reached one replica and not the other. Rather than marking the whole volume
/// dirty, recovery marks only the hot extents recorded in the newest valid AL
/// transaction (see ``ActivityLogRecovery``).
///
/// The type does no I/O. Per guest write the caller does:
///
/// ```swift
/// switch al.prepareWrite(offset: o, length: n) {
/// case .proceed:                // extents are durably hot: issue the write
/// case .wait:                   // queue the write; retry after the next
///                               // transactionDidComplete or completeWrite
/// }
/// // once per event-loop tick (batching all activations since the last one):
/// if let tx = al.makeTransaction() {
///     // 1. persist bitmap blocks for tx.evicted (if they have dirty bits)
///     // 2. write tx.bytes at alRegionOffset + tx.slot * 4096, durably (FUA)
///     // 3. al.transactionDidComplete(sequence: tx.sequence); retry queued writes
/// }
/// // when the write finishes (success or error):
/// try al.completeWrite(offset: o, length: n)
/// ```
///
/// Invariant (tested under simulated crashes at every step): every extent with
/// a write between `.proceed` and `completeWrite` is in the hot set of the
/// newest transaction on disk, whether or not an in-flight transaction made it.
/// That holds because (a) writes only proceed on extents whose activation is
/// durable, (b) only extents with no write in flight are evicted, and (c) an
/// evicted extent leaves the in-memory hot set the moment the evicting
/// transaction is built, so no new write can start on it until it is re-activated.
///
/// At most one transaction is in flight; all activations requested meanwhile
/// are batched into the next one.
public struct ActivityLog: Sendable {
    public struct Configuration: Sendable, Hashable {
        /// Bytes per extent (power of two ≥ 64 KiB). 4 MiB like DRBD: a hot
        /// extent costs at most 4 MiB of resync after a crash.
        public var extentSize: UInt64
        /// Maximum number of hot extents. 257 × 4 MiB ≈ 1 GiB of working set:
        /// enough for a VM's active write area without an AL write per guest
        /// write, while a crash costs at most ~1 GiB of resync.
        public var hotExtentLimit: Int
        /// Slots in the on-disk ring (4 KiB each). Spreads AL writes over 64
        /// blocks; correctness only needs 2.
        public var slotCount: Int

        public static let `default` = Configuration(extentSize: 4 << 20, hotExtentLimit: 257, slotCount: 64)

        public init(extentSize: UInt64, hotExtentLimit: Int, slotCount: Int) {
            self.extentSize = extentSize
            self.hotExtentLimit = hotExtentLimit
            self.slotCount = slotCount
        }

        /// Bytes of the on-disk ring.
        public var ringSize: Int { slotCount * ActivityLogTransaction.blockSize }
    }

    /// The answer to ``prepareWrite(offset:length:)``.
    public enum Decision: Sendable, Hashable {
        /// Every extent of the write is durably hot; a reference is now held on
        /// each, to be released by ``completeWrite(offset:length:)``.
        case proceed
        /// Some extents are not durably hot yet (they are now pending
        /// activation, or waiting for an in-flight transaction, or the hot set
        /// is full of busy extents). No reference is held; retry later.
        case wait
    }

    struct Entry: Sendable {
        var references: Int
        var lastUse: UInt64
    }

    public let configuration: Configuration
    public let volumeSize: UInt64
    /// Ties transactions to this volume (e.g. derived from the volume UUID), so
    /// a ring copied from another volume is never trusted.
    public let volumeTag: UInt64
    let extentShift: UInt64

    /// Durably hot extents usable by writes.
    var hot: [UInt32: Entry] = [:]
    /// Extents waiting for the next transaction, in request order.
    var pending: [UInt32] = []
    var pendingSet: Set<UInt32> = []
    /// The transaction being written: its sequence and the extents it activates.
    var inFlight: (sequence: UInt64, activated: [UInt32])?
    var activatingSet: Set<UInt32> = []
    var nextSequence: UInt64
    var tick: UInt64 = 0

    /// Creates an empty activity log for a fresh volume, or one that continues
    /// after `recovery` (its extents start hot; the caller has already marked
    /// them dirty in the bitmap, so keeping them hot needs no new transaction).
    public init(configuration: Configuration = .default, volumeSize: UInt64, volumeTag: UInt64,
                recovery: ActivityLogRecovery? = nil) throws(ActivityLogError) {
        let c = configuration
        guard c.extentSize >= 64 << 10, c.extentSize & (c.extentSize - 1) == 0 else {
            throw .invalidExtentSize(c.extentSize)
        }
        guard (16...ActivityLogTransaction.maximumExtents).contains(c.hotExtentLimit) else {
            throw .invalidHotExtentLimit(c.hotExtentLimit)
        }
        guard c.slotCount >= 2 else { throw .invalidSlotCount(c.slotCount) }
        let shift = UInt64(c.extentSize.trailingZeroBitCount)
        guard (volumeSize + c.extentSize - 1) >> shift <= UInt64(UInt32.max) else {
            throw .volumeTooLarge(volumeSize)
        }
        self.configuration = c
        self.volumeSize = volumeSize
        self.volumeTag = volumeTag
        self.extentShift = shift
        self.nextSequence = (recovery?.sequence ?? 0) + 1
        for e in recovery?.extents ?? [] {
            hot[e] = Entry(references: 0, lastUse: 0)
        }
    }

    /// Extent numbers covering the byte range.
    @inlinable
    public func extents(offset: UInt64, length: UInt64) -> ClosedRange<UInt32> {
        let shift = UInt64(configuration.extentSize.trailingZeroBitCount)
        return UInt32(offset >> shift)...UInt32((offset + max(length, 1) - 1) >> shift)
    }

    /// Number of durably hot extents.
    public var hotCount: Int { hot.count }
    /// Extents waiting for the next transaction.
    public var pendingActivations: [UInt32] { pending }
    /// Whether a transaction is being written.
    public var hasTransactionInFlight: Bool { inFlight != nil }
    /// The durably hot extents, ascending.
    public var hotExtents: [UInt32] { hot.keys.sorted() }

    /// Asks whether a write may start. Hot path: one dictionary probe per
    /// extent touched (normally one).
    public mutating func prepareWrite(offset: UInt64, length: UInt64) throws(ActivityLogError) -> Decision {
        guard offset <= volumeSize, length <= volumeSize - offset else {
            throw .rangeOutOfBounds(offset: offset, length: length, volumeSize: volumeSize)
        }
        let range = extents(offset: offset, length: length)
        tick &+= 1
        var allHot = true
        for e in range where hot[e] == nil {
            allHot = false
            if !activatingSet.contains(e) && !pendingSet.contains(e) {
                pending.append(e)
                pendingSet.insert(e)
            }
        }
        guard allHot else { return .wait }
        for e in range {
            hot[e]!.references += 1
            hot[e]!.lastUse = tick
        }
        return .proceed
    }

    /// Releases the references taken by a `.proceed` for the same range.
    public mutating func completeWrite(offset: UInt64, length: UInt64) throws(ActivityLogError) {
        let range = extents(offset: offset, length: length)
        guard range.allSatisfy({ (hot[$0]?.references ?? 0) > 0 }) else {
            throw .writeNotInFlight(offset: offset, length: length)
        }
        for e in range { hot[e]!.references -= 1 }
    }

    /// Batches every pending activation (as many as fit) into one transaction,
    /// evicting least-recently-used idle extents to make room.
    ///
    /// Returns `nil` when a transaction is already in flight, nothing is
    /// pending, or no room can be made because every hot extent is busy (retry
    /// after ``completeWrite(offset:length:)``).
    public mutating func makeTransaction() -> ActivityLogTransaction? {
        guard inFlight == nil, !pending.isEmpty else { return nil }
        let limit = configuration.hotExtentLimit
        let free = max(0, limit - hot.count)
        let mustEvict = max(0, pending.count - free)
        var evicted = [UInt32]()
        if mustEvict > 0 {
            let idle = hot.filter { $0.value.references == 0 }.sorted {
                ($0.value.lastUse, $0.key) < ($1.value.lastUse, $1.key)
            }
            evicted = idle.prefix(mustEvict).map(\.key)
        }
        // Over-full hot sets (after recovery with a smaller limit) shrink here too.
        let room = max(0, limit - (hot.count - evicted.count))
        let activateCount = min(pending.count, room)
        guard activateCount > 0 else { return nil }
        let activated = Array(pending.prefix(activateCount))
        pending.removeFirst(activateCount)
        for e in activated {
            pendingSet.remove(e)
            activatingSet.insert(e)
        }
        // Leaving `hot` now is what keeps new writes off evicted extents.
        for e in evicted { hot[e] = nil }
        return buildTransaction(activated: activated, evicted: evicted.sorted())
    }

    /// A transaction that evicts every idle hot extent — written at clean
    /// shutdown (after the bitmap) so the next start has nothing to mark
    /// dirty. `nil` while another transaction is in flight.
    public mutating func makeQuiesceTransaction() -> ActivityLogTransaction? {
        guard inFlight == nil else { return nil }
        let evicted = hot.filter { $0.value.references == 0 }.map(\.key).sorted()
        for e in evicted { hot[e] = nil }
        return buildTransaction(activated: [], evicted: evicted)
    }

    mutating func buildTransaction(activated: [UInt32], evicted: [UInt32]) -> ActivityLogTransaction {
        let sequence = nextSequence
        nextSequence += 1
        inFlight = (sequence, activated)
        let all = (Array(hot.keys) + activated).sorted()
        return ActivityLogTransaction(
            sequence: sequence,
            slot: Int(sequence % UInt64(configuration.slotCount)),
            activated: activated,
            evicted: evicted,
            extents: all,
            bytes: ActivityLogTransaction.encode(
                sequence: sequence, volumeTag: volumeTag, extentShift: UInt32(extentShift), extents: all))
    }

    /// Records that the transaction is durable; its extents become usable.
    public mutating func transactionDidComplete(sequence: UInt64) throws(ActivityLogError) {
        guard let t = inFlight, t.sequence == sequence else { throw .noSuchTransaction(sequence) }
        inFlight = nil
        tick &+= 1
        for e in t.activated {
            activatingSet.remove(e)
            hot[e] = Entry(references: 0, lastUse: tick)
        }
    }

    /// Records that writing the transaction failed. Its activations go back to
    /// pending; its evictions stand (the older on-disk transaction still lists
    /// them, which only over-covers). The next transaction reuses no sequence
    /// number, so a partially written block can never shadow a newer one.
    public mutating func transactionDidFail(sequence: UInt64) throws(ActivityLogError) {
        guard let t = inFlight, t.sequence == sequence else { throw .noSuchTransaction(sequence) }
        inFlight = nil
        for e in t.activated { activatingSet.remove(e) }
        let retry = t.activated.filter { !pendingSet.contains($0) }
        pending.insert(contentsOf: retry, at: 0)
        pendingSet.formUnion(retry)
    }

    /// Byte range `(offset, length)` of extent `e` inside the volume — what to
    /// mark dirty or which bitmap blocks to persist on eviction.
    public func byteRange(ofExtent e: UInt32) -> (offset: UInt64, length: UInt64) {
        let offset = UInt64(e) << extentShift
        guard offset < volumeSize else { return (offset, 0) }
        return (offset, min(configuration.extentSize, volumeSize - offset))
    }
}
