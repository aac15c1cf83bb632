import Testing
@testable import Volume

@Suite struct DirtyBitmapTests {
    let KiB: UInt64 = 1024
    let MiB: UInt64 = 1024 * 1024

    @Test(arguments: [UInt64(0), 512, 1000, 4095, 6144, 3 << 20])
    func rejectsInvalidGrainSizes(_ grain: UInt64) {
        #expect(throws: DirtyBitmapError.invalidGrainSize(grain)) {
            try DirtyBitmap(volumeSize: 1 << 30, grainSize: grain)
        }
    }

    @Test func geometryWithPartialLastGrain() throws {
        let b = try DirtyBitmap(volumeSize: 10 * MiB + 1, grainSize: 64 * KiB)
        #expect(b.grainCount == 161)
        #expect(b.isEmpty)
        #expect(b.serialized().count == 3 * 8)
        #expect(DirtyBitmap.serializedByteCount(volumeSize: 10 * MiB + 1, grainSize: 64 * KiB) == 24)
    }

    @Test func setCoversEveryTouchedGrain() throws {
        var b = try DirtyBitmap(volumeSize: 1 << 30, grainSize: 64 * KiB)
        // 4 KiB write straddling grains 0 and 1.
        try b.set(offset: 64 * KiB - 2048, length: 4096)
        #expect(b.setCount == 2)
        #expect(b.isGrainSet(0) && b.isGrainSet(1) && !b.isGrainSet(2))
        #expect(try b.isSet(offset: 70 * KiB, length: 1))
        #expect(try !b.isSet(offset: 128 * KiB, length: 64 * KiB))
        // Setting again is idempotent for the count.
        try b.set(offset: 0, length: 128 * KiB)
        #expect(b.setCount == 2)
        try b.set(offset: 0, length: 0)
        #expect(b.setCount == 2)
    }

    @Test func outOfBoundsRangesAreRejected() throws {
        var b = try DirtyBitmap(volumeSize: 1 * MiB, grainSize: 64 * KiB)
        #expect(throws: DirtyBitmapError.rangeOutOfBounds(offset: 1 * MiB - 1, length: 2, volumeSize: 1 * MiB)) {
            try b.set(offset: 1 * MiB - 1, length: 2)
        }
        #expect(throws: DirtyBitmapError.self) { try b.set(offset: UInt64.max, length: 2) }
        #expect(throws: DirtyBitmapError.self) { try b.clear(offset: 0, length: 2 * MiB) }
        #expect(throws: DirtyBitmapError.self) { _ = try b.isSet(offset: 2 * MiB, length: 0) }
        try b.set(offset: 1 * MiB - 1, length: 1)
        #expect(b.setCount == 1)
    }

    @Test func clearOnlyClearsFullyCoveredGrains() throws {
        var b = try DirtyBitmap(volumeSize: 1 * MiB + 4 * KiB, grainSize: 64 * KiB)
        b.setAll()
        #expect(b.setCount == 17)
        #expect(b.dirtyByteCount == 1 * MiB + 4 * KiB)
        // Covers grain 1 fully and grains 0 and 2 partially.
        try b.clear(offset: 32 * KiB, length: 128 * KiB)
        #expect(b.isGrainSet(0) && !b.isGrainSet(1) && b.isGrainSet(2))
        // Range ending at the volume end clears the partial last grain.
        try b.clear(offset: 1 * MiB, length: 4 * KiB)
        #expect(!b.isGrainSet(16))
        #expect(b.setCount == 15)
        b.clearAll()
        #expect(b.isEmpty && b.dirtyByteCount == 0)
    }

    @Test func runsAreMaximalAndClippedToVolume() throws {
        var b = try DirtyBitmap(volumeSize: 100 * 64 * KiB + 100, grainSize: 64 * KiB)
        b.setGrains(3...5)
        b.setGrains(63...64)     // crosses a word boundary
        b.setGrains(70...70)
        b.setGrains(99...100)    // includes the partial last grain
        let runs = Array(b.runs)
        #expect(runs == [
            .init(offset: 3 * 64 * KiB, length: 3 * 64 * KiB),
            .init(offset: 63 * 64 * KiB, length: 2 * 64 * KiB),
            .init(offset: 70 * 64 * KiB, length: 64 * KiB),
            .init(offset: 99 * 64 * KiB, length: 64 * KiB + 100),
        ])
        #expect(b.dirtyByteCount == runs.reduce(0) { $0 + $1.length })
    }

    /// Random operations checked against a `[Bool]` model.
    @Test func randomOperationsMatchModel() throws {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<20 {
            let grain = UInt64(4096) << UInt64.random(in: 0...4, using: &rng)
            let size = UInt64.random(in: 1...(300 * grain), using: &rng)
            var b = try DirtyBitmap(volumeSize: size, grainSize: grain)
            var model = [Bool](repeating: false, count: b.grainCount)
            for _ in 0..<200 {
                let off = UInt64.random(in: 0..<size, using: &rng)
                let len = UInt64.random(in: 0...min(size - off, 20 * grain), using: &rng)
                let first = Int(off / grain)
                if Bool.random(using: &rng) {
                    try b.set(offset: off, length: len)
                    if len > 0 { for g in first...Int((off + len - 1) / grain) { model[g] = true } }
                } else {
                    try b.clear(offset: off, length: len)
                    let end = off + len
                    let cFirst = Int((off + grain - 1) / grain)
                    let cEnd = end == size ? model.count : Int(end / grain)
                    if len > 0, cFirst < cEnd { for g in cFirst..<cEnd { model[g] = false } }
                }
                let probeLen = UInt64.random(in: 0...min(size - off, 3 * grain), using: &rng)
                let expectProbe = probeLen > 0 && (first...Int((off + probeLen - 1) / grain)).contains { model[$0] }
                #expect(try b.isSet(offset: off, length: probeLen) == expectProbe)
            }
            #expect(b.setCount == model.filter { $0 }.count)
            // Reconstruct the model from runs.
            var fromRuns = [Bool](repeating: false, count: model.count)
            var lastEnd: UInt64? = nil
            for r in b.runs {
                #expect(r.length > 0)
                if let e = lastEnd { #expect(r.offset > e, "runs must be maximal and ordered") }
                lastEnd = r.offset + r.length
                for g in Int(r.offset / grain)..<Int((r.offset + r.length + grain - 1) / grain) { fromRuns[g] = true }
            }
            #expect(fromRuns == model)
            let decoded = try DirtyBitmap(volumeSize: size, grainSize: grain, serialized: b.serialized())
            #expect(decoded == b)
        }
    }

    @Test func unionMergesAndChecksGeometry() throws {
        var a = try DirtyBitmap(volumeSize: 10 * MiB)
        var b = try DirtyBitmap(volumeSize: 10 * MiB)
        a.setGrains(1...3)
        b.setGrains(3...5)
        try a.formUnion(b)
        #expect(a.setCount == 5)
        #expect(Array(a.runs) == [.init(offset: 64 * KiB, length: 5 * 64 * KiB)])
        let other = try DirtyBitmap(volumeSize: 10 * MiB, grainSize: 128 * KiB)
        #expect(throws: DirtyBitmapError.self) { try a.formUnion(other) }
    }

    @Test func serializationIsLittleEndianWordsAndValidated() throws {
        var b = try DirtyBitmap(volumeSize: 100 * 64 * KiB, grainSize: 64 * KiB)
        b.setGrains(0...0)
        b.setGrains(65...65)
        let bytes = b.serialized()
        #expect(bytes.count == 16)
        #expect(bytes[0] == 1 && bytes[8] == 2)
        #expect(throws: DirtyBitmapError.truncated(expectedBytes: 16, foundBytes: 15)) {
            try DirtyBitmap(volumeSize: 100 * 64 * KiB, grainSize: 64 * KiB, serialized: Array(bytes[..<15]))
        }
        // Padding is allowed if zero.
        let padded = bytes + [UInt8](repeating: 0, count: 4080)
        #expect(try DirtyBitmap(volumeSize: 100 * 64 * KiB, grainSize: 64 * KiB, serialized: padded) == b)
        var beyond = bytes
        beyond[15] = 0x80   // grain 127 > last grain 99
        #expect(throws: DirtyBitmapError.bitsBeyondEnd(grainCount: 100)) {
            try DirtyBitmap(volumeSize: 100 * 64 * KiB, grainSize: 64 * KiB, serialized: beyond)
        }
        var junk = padded
        junk[4000] = 1
        #expect(throws: DirtyBitmapError.self) {
            try DirtyBitmap(volumeSize: 100 * 64 * KiB, grainSize: 64 * KiB, serialized: junk)
        }
    }

    @Test func blockSerializationMatchesWhole() throws {
        var b = try DirtyBitmap(volumeSize: 5 << 40, grainSize: 64 * KiB)  // 5 TiB: 10 MiB bitmap
        let off: UInt64 = 3 << 40 + 12345 * 64 * KiB
        try b.set(offset: off, length: 4096)
        let block = b.blockIndex(forByteOffset: off)
        let bytes = b.serializedBlock(block)
        #expect(bytes.count == 4096)
        let whole = b.serialized()
        #expect(Array(whole[(block * 4096)..<((block + 1) * 4096)]) == bytes)
        #expect(bytes.contains { $0 != 0 })
        #expect(b.blockCount() == whole.count / 4096)
    }

    /// Runs of a sparse 1 TiB bitmap with 64 KiB grains add up to its dirty bytes. (Write-path and
    /// resync-path speed is measured in perf/Benchmarks, DirtyBitmapBenchmarks.)
    @Test func runsOfASparseOneTiBBitmapCoverItsDirtyBytes() throws {
        var b = try DirtyBitmap(volumeSize: 1 << 40)
        var rng = SplitMix(seed: 0x5EED)
        for _ in 0..<20_000 { try b.set(offset: (rng.next() % ((1 << 40) / 4096)) * 4096, length: 4096) }
        var runCount = 0
        var bytes: UInt64 = 0
        for r in b.runs { runCount += 1; bytes += r.length }
        #expect(bytes == b.dirtyByteCount)
        #expect(runCount > 0 && runCount <= b.setCount)
        var empty = try DirtyBitmap(volumeSize: 1 << 40)
        #expect(Array(empty.runs).isEmpty)
        empty.setAll()
        #expect(empty.setCount == 1 << 24)
        #expect(Array(empty.runs) == [.init(offset: 0, length: 1 << 40)])
    }
}
