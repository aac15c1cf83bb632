/// One bit per *grain* of a volume: set when the grain may differ from the
/// peer's copy and must be resynchronized.
///
/// The bitmap is the long-lived record of "what changed while the peer was
/// away"; the ``ActivityLog`` covers the short window of in-flight writes.
///
/// Grain size trades bitmap size against resync amplification. The default
/// of 64 KiB gives a 2 MiB bitmap for a 1 TiB volume (small enough to keep in
/// memory and write out whole on clean shutdown) while one dirty 4 KiB guest
/// write costs at most 64 KiB of resync traffic. DRBD uses 4 KiB, which for
/// our multi-TiB images would be a 32 MiB-per-TiB bitmap for little gain.
///
/// Storage is `[UInt64]` words, bit `i % 64` of word `i / 64` for grain `i`,
/// so set/clear/test of a range touch only the words the range covers and
/// iteration skips clean 4 Mi-grain stretches a word at a time.
///
/// The bitmap does no I/O: ``serialized()`` and ``serializedBlock(_:blockSize:)``
/// produce bytes for the caller to write into the metadata bitmap region.
public struct DirtyBitmap: Sendable, Hashable {
    /// The default grain size, 64 KiB.
    public static let defaultGrainSize: UInt64 = 64 << 10
    /// Smallest allowed grain: the guest's page/sector granularity we care about.
    public static let minimumGrainSize: UInt64 = 4 << 10

    /// Size of the volume in bytes; the last grain may be partial.
    public let volumeSize: UInt64
    /// Bytes per grain (a power of two, at least 4 KiB).
    public let grainSize: UInt64
    /// log2(grainSize).
    @usableFromInline let grainShift: UInt64
    /// Number of grains, `ceil(volumeSize / grainSize)`.
    public let grainCount: Int
    @usableFromInline var words: [UInt64]
    /// Number of set grains, maintained incrementally so it is O(1) to read.
    @inlinable public var setCount: Int { _setCount }
    @usableFromInline var _setCount: Int

    /// Creates an all-clean bitmap.
    public init(volumeSize: UInt64, grainSize: UInt64 = DirtyBitmap.defaultGrainSize) throws(DirtyBitmapError) {
        guard grainSize >= Self.minimumGrainSize, grainSize & (grainSize - 1) == 0 else {
            throw .invalidGrainSize(grainSize)
        }
        self.volumeSize = volumeSize
        self.grainSize = grainSize
        self.grainShift = UInt64(grainSize.trailingZeroBitCount)
        let grains = (volumeSize + grainSize - 1) >> UInt64(grainSize.trailingZeroBitCount)
        self.grainCount = Int(grains)
        self.words = [UInt64](repeating: 0, count: (Int(grains) + 63) / 64)
        self._setCount = 0
    }

    /// Number of bytes ``serialized()`` produces (whole UInt64 words).
    public static func serializedByteCount(volumeSize: UInt64, grainSize: UInt64) -> Int {
        let grains = (volumeSize + grainSize - 1) / grainSize
        return Int((grains + 63) / 64) * 8
    }

    /// Whether every grain is clean.
    @inlinable public var isEmpty: Bool { setCount == 0 }

    /// Bytes of the volume covered by set grains (the last grain counts only its
    /// in-volume part), i.e. how much a resync would copy.
    public var dirtyByteCount: UInt64 {
        guard setCount > 0 else { return 0 }
        var total = UInt64(setCount) << grainShift
        if volumeSize % grainSize != 0, isGrainSet(grainCount - 1) {
            total -= grainSize - volumeSize % grainSize
        }
        return total
    }

    // MARK: - Range operations (write path)

    @inlinable
    func checkRange(_ offset: UInt64, _ length: UInt64) throws(DirtyBitmapError) {
        guard offset <= volumeSize, length <= volumeSize - offset else {
            throw .rangeOutOfBounds(offset: offset, length: length, volumeSize: volumeSize)
        }
    }

    /// Marks every grain that overlaps `[offset, offset+length)` dirty.
    /// A zero length is a no-op. Cost is proportional to the words covered, so a
    /// 4 KiB write is a handful of instructions.
    @inlinable
    public mutating func set(offset: UInt64, length: UInt64) throws(DirtyBitmapError) {
        try checkRange(offset, length)
        guard length > 0 else { return }
        setGrains(Int(offset >> grainShift)...Int((offset + length - 1) >> grainShift))
    }

    /// Marks the grains `range` dirty.
    @inlinable
    public mutating func setGrains(_ range: ClosedRange<Int>) {
        precondition(range.lowerBound >= 0 && range.upperBound < grainCount, "grain range out of bounds")
        apply(range) { $0 | $1 }
    }

    /// Marks clean every grain lying *entirely* inside `[offset, offset+length)`
    /// (the in-volume part of a partial last grain counts as entire).
    ///
    /// Partially covered grains stay dirty on purpose: clearing them would forget
    /// dirty bytes outside the range, i.e. lose data on the next resync.
    public mutating func clear(offset: UInt64, length: UInt64) throws(DirtyBitmapError) {
        try checkRange(offset, length)
        guard length > 0 else { return }
        let first = (offset + grainSize - 1) >> grainShift
        let end = offset + length
        let lastExclusive = end == volumeSize ? UInt64(grainCount) : end >> grainShift
        guard first < lastExclusive else { return }
        clearGrains(Int(first)...Int(lastExclusive - 1))
    }

    /// Marks the grains `range` clean.
    public mutating func clearGrains(_ range: ClosedRange<Int>) {
        precondition(range.lowerBound >= 0 && range.upperBound < grainCount, "grain range out of bounds")
        apply(range) { $0 & ~$1 }
    }

    /// Clears every grain.
    public mutating func clearAll() {
        for i in words.indices { words[i] = 0 }
        _setCount = 0
    }

    /// Marks every grain dirty (full resync).
    public mutating func setAll() {
        guard grainCount > 0 else { return }
        setGrains(0...(grainCount - 1))
    }

    /// Whether any grain overlapping `[offset, offset+length)` is dirty.
    public func isSet(offset: UInt64, length: UInt64) throws(DirtyBitmapError) -> Bool {
        try checkRange(offset, length)
        guard length > 0 else { return false }
        let first = Int(offset >> grainShift)
        let last = Int((offset + length - 1) >> grainShift)
        return firstSetGrain(in: first...last) != nil
    }

    /// Whether grain `index` is dirty.
    @inlinable
    public func isGrainSet(_ index: Int) -> Bool {
        precondition(index >= 0 && index < grainCount, "grain index out of bounds")
        return words[index >> 6] & (1 << UInt64(index & 63)) != 0
    }

    /// Applies `op(word, mask)` to the words covering `range`, keeping `setCount` exact.
    @inlinable
    mutating func apply(_ range: ClosedRange<Int>, _ op: (UInt64, UInt64) -> UInt64) {
        let firstWord = range.lowerBound >> 6
        let lastWord = range.upperBound >> 6
        var delta = 0
        words.withUnsafeMutableBufferPointer { w in
            for wi in firstWord...lastWord {
                var mask = UInt64.max
                if wi == firstWord { mask &= UInt64.max << UInt64(range.lowerBound & 63) }
                if wi == lastWord { mask &= UInt64.max >> UInt64(63 - (range.upperBound & 63)) }
                let old = w[wi]
                let new = op(old, mask)
                if old != new {
                    delta += new.nonzeroBitCount - old.nonzeroBitCount
                    w[wi] = new
                }
            }
        }
        _setCount += delta
    }

    // MARK: - Iteration

    /// The first set grain at or after `range.lowerBound` and at most `range.upperBound`.
    public func firstSetGrain(in range: ClosedRange<Int>) -> Int? {
        guard range.lowerBound < grainCount else { return nil }
        let upper = min(range.upperBound, grainCount - 1)
        guard range.lowerBound <= upper else { return nil }
        var wi = range.lowerBound >> 6
        var word = words[wi] & (UInt64.max << UInt64(range.lowerBound & 63))
        let lastWord = upper >> 6
        while true {
            if word != 0 {
                let g = wi << 6 + word.trailingZeroBitCount
                return g <= upper ? g : nil
            }
            wi += 1
            if wi > lastWord { return nil }
            word = words[wi]
        }
    }

    /// The first clean grain at or after `start`, or `grainCount` if none.
    func firstClearGrain(from start: Int) -> Int {
        guard start < grainCount else { return grainCount }
        var wi = start >> 6
        var word = ~words[wi] & (UInt64.max << UInt64(start & 63))
        while true {
            if word != 0 { return min(wi << 6 + word.trailingZeroBitCount, grainCount) }
            wi += 1
            if wi == words.count { return grainCount }
            word = ~words[wi]
        }
    }

    /// A maximal run of consecutive dirty grains, expressed in bytes.
    public struct Run: Sendable, Hashable {
        /// Byte offset of the first dirty grain.
        public var offset: UInt64
        /// Length in bytes, clipped to the end of the volume.
        public var length: UInt64
        public init(offset: UInt64, length: UInt64) {
            self.offset = offset
            self.length = length
        }
    }

    /// Maximal runs of dirty grains in ascending order, as byte ranges; the
    /// resync source reads exactly these.
    public var runs: Runs { Runs(bitmap: self) }

    /// Sequence of ``Run``s; clean words are skipped 64 grains at a time.
    public struct Runs: Sequence, Sendable {
        let bitmap: DirtyBitmap
        public struct Iterator: IteratorProtocol {
            let bitmap: DirtyBitmap
            var position: Int = 0
            public mutating func next() -> Run? {
                guard position < bitmap.grainCount,
                      let start = bitmap.firstSetGrain(in: position...(bitmap.grainCount - 1)) else {
                    position = bitmap.grainCount
                    return nil
                }
                let end = bitmap.firstClearGrain(from: start)
                position = end
                let offset = UInt64(start) << bitmap.grainShift
                let endByte = Swift.min(UInt64(end) << bitmap.grainShift, bitmap.volumeSize)
                return Run(offset: offset, length: endByte - offset)
            }
        }
        public func makeIterator() -> Iterator { Iterator(bitmap: bitmap) }
    }

    // MARK: - Merge

    /// ORs `other` into `self` (e.g. the peer's bitmap at reconnect, or AL
    /// extents after a crash). Both must have the same geometry.
    public mutating func formUnion(_ other: DirtyBitmap) throws(DirtyBitmapError) {
        guard other.volumeSize == volumeSize, other.grainSize == grainSize else {
            throw .geometryMismatch(
                expected: "size \(volumeSize) grain \(grainSize)",
                found: "size \(other.volumeSize) grain \(other.grainSize)")
        }
        var count = 0
        words.withUnsafeMutableBufferPointer { w in
            other.words.withUnsafeBufferPointer { o in
                for i in 0..<w.count {
                    w[i] |= o[i]
                    count += w[i].nonzeroBitCount
                }
            }
        }
        _setCount = count
    }

    // MARK: - Serialization

    /// All words as little-endian UInt64s, ``serializedByteCount(volumeSize:grainSize:)`` bytes.
    public func serialized() -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(words.count * 8)
        for w in words { out.appendLittleEndian(w) }
        return out
    }

    /// Number of `blockSize` blocks needed to hold the serialized bitmap.
    public func blockCount(blockSize: Int = 4096) -> Int {
        (words.count * 8 + blockSize - 1) / blockSize
    }

    /// Index of the `blockSize` block of the serialized bitmap that holds the
    /// bit of the grain containing byte `offset` — what to rewrite when only
    /// that part changed (e.g. before an activity-log eviction).
    public func blockIndex(forByteOffset offset: UInt64, blockSize: Int = 4096) -> Int {
        Int(offset >> grainShift) / 8 / blockSize
    }

    /// Block `index` of the serialized bitmap, zero-padded to `blockSize` bytes.
    public func serializedBlock(_ index: Int, blockSize: Int = 4096) -> [UInt8] {
        precondition(blockSize % 8 == 0 && index >= 0 && index < blockCount(blockSize: blockSize))
        let wordsPerBlock = blockSize / 8
        let lower = index * wordsPerBlock
        let upper = min(lower + wordsPerBlock, words.count)
        var out = [UInt8]()
        out.reserveCapacity(blockSize)
        for w in words[lower..<upper] { out.appendLittleEndian(w) }
        out.append(contentsOf: repeatElement(0, count: blockSize - out.count))
        return out
    }

    /// Decodes bytes produced by ``serialized()`` (extra trailing bytes, e.g.
    /// padding to the metadata region's 4 KiB alignment, must be zero).
    public init(volumeSize: UInt64, grainSize: UInt64, serialized bytes: [UInt8]) throws(DirtyBitmapError) {
        try self.init(volumeSize: volumeSize, grainSize: grainSize)
        let needed = words.count * 8
        guard bytes.count >= needed else { throw .truncated(expectedBytes: needed, foundBytes: bytes.count) }
        var count = 0
        for i in 0..<words.count {
            let w: UInt64 = bytes.readLittleEndian(at: i * 8)
            words[i] = w
            count += w.nonzeroBitCount
        }
        let tailBits = grainCount & 63
        if tailBits != 0, let last = words.last, last >> UInt64(tailBits) != 0 {
            throw .bitsBeyondEnd(grainCount: grainCount)
        }
        if bytes[needed...].contains(where: { $0 != 0 }) { throw .bitsBeyondEnd(grainCount: grainCount) }
        _setCount = count
    }
}
