import Testing
@testable import Volume

@Suite struct ActivityLogTests {
    static let MiB: UInt64 = 1 << 20
    let tag: UInt64 = 0xABCD_EF01_2345_6789

    func smallConfig(limit: Int = 16, slots: Int = 4) -> ActivityLog.Configuration {
        .init(extentSize: 4 * Self.MiB, hotExtentLimit: limit, slotCount: slots)
    }

    @Test func configurationIsValidated() {
        #expect(throws: ActivityLogError.invalidExtentSize(3 << 20)) {
            try ActivityLog(configuration: .init(extentSize: 3 << 20, hotExtentLimit: 257, slotCount: 64), volumeSize: 1 << 30, volumeTag: 1)
        }
        #expect(throws: ActivityLogError.invalidHotExtentLimit(2000)) {
            try ActivityLog(configuration: .init(extentSize: 4 << 20, hotExtentLimit: 2000, slotCount: 64), volumeSize: 1 << 30, volumeTag: 1)
        }
        #expect(throws: ActivityLogError.invalidSlotCount(1)) {
            try ActivityLog(configuration: .init(extentSize: 4 << 20, hotExtentLimit: 257, slotCount: 1), volumeSize: 1 << 30, volumeTag: 1)
        }
        #expect(throws: ActivityLogError.volumeTooLarge(UInt64.max / 2)) {
            try ActivityLog(configuration: .init(extentSize: 64 << 10, hotExtentLimit: 257, slotCount: 64), volumeSize: UInt64.max / 2, volumeTag: 1)
        }
        #expect(ActivityLogTransaction.maximumExtents == 1014)
    }

    @Test func firstWriteNeedsTransactionThenProceeds() throws {
        var al = try ActivityLog(volumeSize: 1 << 30, volumeTag: tag)
        #expect(try al.prepareWrite(offset: 4 * Self.MiB - 4096, length: 8192) == .wait)  // spans extents 0 and 1
        #expect(try al.prepareWrite(offset: 0, length: 4096) == .wait)                    // batched, not duplicated
        #expect(al.pendingActivations == [0, 1])
        let tx = try required(al.makeTransaction())
        #expect(tx.sequence == 1 && tx.slot == 1)
        #expect(tx.activated == [0, 1] && tx.evicted.isEmpty && tx.extents == [0, 1])
        #expect(tx.bytes.count == 4096)
        #expect(al.makeTransaction() == nil, "one transaction in flight at a time")
        #expect(try al.prepareWrite(offset: 0, length: 4096) == .wait, "not durable yet")
        try al.transactionDidComplete(sequence: 1)
        #expect(try al.prepareWrite(offset: 0, length: 4096) == .proceed)
        #expect(try al.prepareWrite(offset: 4 * Self.MiB - 4096, length: 8192) == .proceed)
        try al.completeWrite(offset: 0, length: 4096)
        try al.completeWrite(offset: 4 * Self.MiB - 4096, length: 8192)
        #expect(throws: ActivityLogError.writeNotInFlight(offset: 0, length: 4096)) {
            try al.completeWrite(offset: 0, length: 4096)
        }
        #expect(throws: ActivityLogError.noSuchTransaction(7)) { try al.transactionDidComplete(sequence: 7) }
        #expect(throws: ActivityLogError.self) { try al.prepareWrite(offset: 1 << 30, length: 1) }
    }

    @Test func evictsLeastRecentlyUsedIdleExtentsOnly() throws {
        var al = try ActivityLog(configuration: smallConfig(), volumeSize: 1 << 30, volumeTag: tag)
        // Fill 16 hot extents.
        for e in 0..<16 { _ = try al.prepareWrite(offset: UInt64(e) * 4 * Self.MiB, length: 4096) }
        try al.transactionDidComplete(sequence: try required(al.makeTransaction()).sequence)
        // Touch extents in order 0..15 so 0 is LRU; keep extent 1 busy.
        for e in 0..<16 {
            #expect(try al.prepareWrite(offset: UInt64(e) * 4 * Self.MiB, length: 4096) == .proceed)
            if e != 1 { try al.completeWrite(offset: UInt64(e) * 4 * Self.MiB, length: 4096) }
        }
        _ = try al.prepareWrite(offset: 100 * 4 * Self.MiB, length: 4096)
        _ = try al.prepareWrite(offset: 101 * 4 * Self.MiB, length: 4096)
        let tx = try required(al.makeTransaction())
        #expect(tx.evicted == [0, 2], "LRU idle extents; busy extent 1 is skipped")
        #expect(tx.activated == [100, 101])
        #expect(tx.extents.count == 16 && !tx.extents.contains(0) && tx.extents.contains(1))
        // An evicted extent must not accept writes until re-activated.
        #expect(try al.prepareWrite(offset: 0, length: 4096) == .wait)
        try al.transactionDidComplete(sequence: tx.sequence)
        #expect(try al.prepareWrite(offset: 100 * 4 * Self.MiB, length: 4096) == .proceed)
    }

    @Test func allBusyBlocksActivationUntilWritesComplete() throws {
        var al = try ActivityLog(configuration: smallConfig(), volumeSize: 1 << 30, volumeTag: tag)
        for e in 0..<16 { _ = try al.prepareWrite(offset: UInt64(e) * 4 * Self.MiB, length: 4096) }
        try al.transactionDidComplete(sequence: try required(al.makeTransaction()).sequence)
        for e in 0..<16 { #expect(try al.prepareWrite(offset: UInt64(e) * 4 * Self.MiB, length: 4096) == .proceed) }
        #expect(try al.prepareWrite(offset: 50 * 4 * Self.MiB, length: 4096) == .wait)
        #expect(al.makeTransaction() == nil, "every hot extent is busy")
        try al.completeWrite(offset: 7 * 4 * Self.MiB, length: 4096)
        let tx = try required(al.makeTransaction())
        #expect(tx.evicted == [7] && tx.activated == [50])
    }

    @Test func failedTransactionRequeuesActivations() throws {
        var al = try ActivityLog(volumeSize: 1 << 30, volumeTag: tag)
        _ = try al.prepareWrite(offset: 0, length: 4096)
        let tx = try required(al.makeTransaction())
        try al.transactionDidFail(sequence: tx.sequence)
        #expect(al.pendingActivations == [0])
        let retry = try required(al.makeTransaction())
        #expect(retry.sequence == tx.sequence + 1, "sequence numbers are never reused")
    }

    @Test func transactionRoundTripsAndDetectsDamage() throws {
        var al = try ActivityLog(configuration: smallConfig(), volumeSize: 1 << 30, volumeTag: tag)
        _ = try al.prepareWrite(offset: 12 * 4 * Self.MiB, length: 4096)
        _ = try al.prepareWrite(offset: 3 * 4 * Self.MiB, length: 4096)
        let tx = try required(al.makeTransaction())
        var ring = [UInt8](repeating: 0, count: 4 * 4096)
        ring.replaceSubrange((tx.slot * 4096)..<((tx.slot + 1) * 4096), with: tx.bytes)
        let r = ActivityLogRecovery(ring: ring, slotCount: 4, volumeTag: tag, extentSize: 4 * Self.MiB)
        #expect(r.extents == [3, 12] && r.sequence == 1 && r.validSlots == 1 && r.invalidSlots.isEmpty)
        // Any single flipped byte invalidates the block.
        for i in stride(from: 0, to: 4096, by: 61) {
            var bad = ring
            bad[tx.slot * 4096 + i] ^= 0x10
            let rr = ActivityLogRecovery(ring: bad, slotCount: 4, volumeTag: tag, extentSize: 4 * Self.MiB)
            #expect(rr.foundNoValidTransaction && rr.invalidSlots.map(\.slot) == [tx.slot], "byte \(i)")
        }
        // Other volume, other extent size, wrong slot.
        #expect(ActivityLogRecovery(ring: ring, slotCount: 4, volumeTag: tag + 1, extentSize: 4 * Self.MiB).foundNoValidTransaction)
        #expect(ActivityLogRecovery(ring: ring, slotCount: 4, volumeTag: tag, extentSize: 8 * Self.MiB).foundNoValidTransaction)
        var moved = [UInt8](repeating: 0, count: 4 * 4096)
        moved.replaceSubrange(0..<4096, with: tx.bytes)
        #expect(ActivityLogRecovery(ring: moved, slotCount: 4, volumeTag: tag, extentSize: 4 * Self.MiB).foundNoValidTransaction)
        // Fresh ring: nothing valid, nothing invalid.
        let fresh = ActivityLogRecovery(ring: [UInt8](repeating: 0, count: 4 * 4096), slotCount: 4, volumeTag: tag, extentSize: 4 * Self.MiB)
        #expect(fresh.foundNoValidTransaction && fresh.invalidSlots.isEmpty && fresh.extents.isEmpty)
    }

    @Test func recoveryMarksExtentsDirtyAndResumes() throws {
        let size: UInt64 = 10 * Self.MiB  // last extent partial
        var al = try ActivityLog(volumeSize: size, volumeTag: tag)
        _ = try al.prepareWrite(offset: 9 * Self.MiB, length: 4096)
        let tx = try required(al.makeTransaction())
        var ring = [UInt8](repeating: 0, count: 64 * 4096)
        ring.replaceSubrange((tx.slot * 4096)..<((tx.slot + 1) * 4096), with: tx.bytes)
        let r = ActivityLogRecovery(ring: ring, slotCount: 64, volumeTag: tag, extentSize: 4 << 20)
        var bitmap = try DirtyBitmap(volumeSize: size)
        r.markDirty(in: &bitmap)
        #expect(Array(bitmap.runs) == [.init(offset: 8 * Self.MiB, length: 2 * Self.MiB)])
        var resumed = try ActivityLog(volumeSize: size, volumeTag: tag, recovery: r)
        #expect(try resumed.prepareWrite(offset: 9 * Self.MiB, length: 4096) == .proceed)
        _ = try resumed.prepareWrite(offset: 0, length: 4096)
        #expect(resumed.makeTransaction()?.sequence == 2)
    }

    @Test func quiesceTransactionEmptiesTheLog() throws {
        var al = try ActivityLog(volumeSize: 1 << 30, volumeTag: tag)
        _ = try al.prepareWrite(offset: 0, length: 4096)
        try al.transactionDidComplete(sequence: try required(al.makeTransaction()).sequence)
        let q = try required(al.makeQuiesceTransaction())
        #expect(q.extents.isEmpty && q.evicted == [0])
        try al.transactionDidComplete(sequence: q.sequence)
        #expect(al.hotCount == 0)
    }

    /// Random workloads with a simulated crash after every step (including a
    /// torn transaction write): the persisted bitmap ∪ recovered AL extents
    /// must cover every grain ever written (disconnected mode), and the AL
    /// extents alone must cover every write in flight (connected mode).
    @Test(arguments: 0..<12)
    func crashAtEveryPointIsCovered(seed: Int) throws {
        var rng = SplitMix(seed: UInt64(seed) &+ 0x9E37)
        let size: UInt64 = 256 * Self.MiB
        let extent = 4 * Self.MiB
        let slots = 2 + seed % 3
        var al = try ActivityLog(configuration: smallConfig(slots: slots), volumeSize: size, volumeTag: tag)
        var ring = [UInt8](repeating: 0, count: slots * 4096)
        var memBitmap = try DirtyBitmap(volumeSize: size)
        var persisted = try DirtyBitmap(volumeSize: size)
        var inFlight: [(UInt64, UInt64)] = []
        var queued: [(UInt64, UInt64)] = []
        var tx: ActivityLogTransaction?
        var txPhase = 0
        var crashes = 0

        func check(_ ringImage: [UInt8]) throws {
            crashes += 1
            let r = ActivityLogRecovery(ring: ringImage, slotCount: slots, volumeTag: tag, extentSize: extent)
            let alSet = Set(r.extents)
            for (o, l) in inFlight {
                for e in UInt32(o / extent)...UInt32((o + l - 1) / extent) {
                    #expect(alSet.contains(e), "in-flight write in extent \(e) not covered by AL (seed \(seed))")
                }
            }
            var recovered = persisted
            r.markDirty(in: &recovered)
            var union = recovered
            try union.formUnion(memBitmap)
            #expect(union == recovered, "written grains lost after crash (seed \(seed))")
        }

        func start(_ w: (UInt64, UInt64)) throws -> Bool {
            guard try al.prepareWrite(offset: w.0, length: w.1) == .proceed else { return false }
            inFlight.append(w)
            try memBitmap.set(offset: w.0, length: w.1)
            return true
        }

        for _ in 0..<1500 {
            switch rng.next() % 10 {
            case 0...3:
                // Skewed toward a working set larger than the 16-extent limit.
                let e = UInt64(rng.next() % (rng.next() % 4 == 0 ? 64 : 24))
                let o = e * extent + (rng.next() % 1024) * 4096
                let l = min(4096 * (1 + rng.next() % 512), size - o)
                if try !start((o, l)) { queued.append((o, l)) }
            case 4...6:
                if !inFlight.isEmpty {
                    let w = inFlight.remove(at: Int(rng.next() % UInt64(inFlight.count)))
                    try al.completeWrite(offset: w.0, length: w.1)
                }
            default:
                if tx == nil {
                    tx = al.makeTransaction()
                    txPhase = 0
                } else if let t = tx {
                    switch txPhase {
                    case 0:
                        // Persist bitmap bits of evicted extents first.
                        for e in t.evicted {
                            let (o, l) = al.byteRange(ofExtent: e)
                            for g in Int(o / memBitmap.grainSize)..<Int((o + l) / memBitmap.grainSize) where memBitmap.isGrainSet(g) {
                                persisted.setGrains(g...g)
                            }
                        }
                        txPhase = 1
                    case 1:
                        // Crash with a torn transaction write.
                        var torn = ring
                        let cut = 1 + Int(rng.next() % 4095)
                        torn.replaceSubrange((t.slot * 4096)..<(t.slot * 4096 + cut), with: t.bytes[..<cut])
                        try check(torn)
                        ring.replaceSubrange((t.slot * 4096)..<((t.slot + 1) * 4096), with: t.bytes)
                        txPhase = 2
                    default:
                        try al.transactionDidComplete(sequence: t.sequence)
                        tx = nil
                        var still: [(UInt64, UInt64)] = []
                        for w in queued where try !start(w) { still.append(w) }
                        queued = still
                    }
                }
            }
            try check(ring)
        }
        #expect(crashes > 1500)
        #expect(memBitmap.setCount > 0)
    }

    /// Writes to hot extents proceed at once and queue no activation. (Its speed is measured in
    /// perf/Benchmarks, ActivityLogBenchmarks.)
    @Test func hotExtentWritesProceedWithoutTransaction() throws {
        var al = try ActivityLog(volumeSize: 1 << 40, volumeTag: tag)
        for e in 0..<200 { _ = try al.prepareWrite(offset: UInt64(e) * 4 * Self.MiB, length: 4096) }
        try al.transactionDidComplete(sequence: try required(al.makeTransaction()).sequence)
        var proceeded = 0
        for i in 0..<20_000 {
            let o = UInt64(i % 200) * 4 * Self.MiB + UInt64(i % 1000) * 4096
            if try al.prepareWrite(offset: o, length: 4096) == .proceed { proceeded += 1 }
            try al.completeWrite(offset: o, length: 4096)
        }
        #expect(proceeded == 20_000)
        #expect(al.pendingActivations.isEmpty && al.hotCount == 200)
        #expect(al.makeTransaction() == nil, "nothing to log")
    }
}

/// Deterministic PRNG so failures are reproducible from the seed.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// `#require` for values produced by mutating calls (the macro cannot wrap those).
func required<T>(_ value: T?, sourceLocation: SourceLocation = #_sourceLocation) throws -> T {
    try #require(value, sourceLocation: sourceLocation)
}
