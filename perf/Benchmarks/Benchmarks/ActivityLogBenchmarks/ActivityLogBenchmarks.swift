// The activity log's per-write cost once an extent is hot: prepareWrite (must say .proceed
// without a transaction) and completeWrite, spread over 200 hot 4 MiB extents of a 1 TiB volume.
import Benchmark
import Volume

let benchmarks: @Sendable () -> Void = {
    let mebibyte: UInt64 = 1 << 20
    let hotExtents = 200
    var log = try! ActivityLog(volumeSize: 1 << 40, volumeTag: 0xABCD_EF01_2345_6789)
    for e in 0..<hotExtents { _ = try! log.prepareWrite(offset: UInt64(e) * 4 * mebibyte, length: 4096) }
    try! log.transactionDidComplete(sequence: log.makeTransaction()!.sequence)

    // One iteration = one 4 KiB write through the activity log.
    var i = 0
    Benchmark("prepareWrite+completeWrite, hot extent",
              configuration: .init(metrics: [.wallClock, .throughput, .mallocCountTotal], scalingFactor: .kilo)) { benchmark in
        var proceeded = 0
        for _ in benchmark.scaledIterations {
            let offset = UInt64(i % hotExtents) * 4 * mebibyte + UInt64(i % 1000) * 4096
            if try! log.prepareWrite(offset: offset, length: 4096) == .proceed { proceeded += 1 }
            try! log.completeWrite(offset: offset, length: 4096)
            i &+= 1
        }
        precondition(proceeded == benchmark.scaledIterations.count, "a hot-extent write waited for a transaction")
    }
}
