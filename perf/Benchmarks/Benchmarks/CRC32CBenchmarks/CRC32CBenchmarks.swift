// CRC-32C (slicing-by-8) over a 4 KiB block (metadata and activity-log blocks, the size of most
// guest writes) and over 1 MiB (a large write). Bytes per second = ops/s × the block size.
import Benchmark
import Volume

let benchmarks: @Sendable () -> Void = {
    let metrics: [BenchmarkMetric] = [.wallClock, .throughput, .mallocCountTotal]
    let small = (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 31) }
    let large = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) }

    // One iteration = one checksum of 4 KiB.
    Benchmark("CRC32C 4 KiB", configuration: .init(metrics: metrics, scalingFactor: .kilo)) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(CRC32C.checksum(small))
        }
    }

    // One iteration = one checksum of 1 MiB.
    Benchmark("CRC32C 1 MiB", configuration: .init(metrics: metrics)) { _ in
        blackHole(CRC32C.checksum(large))
    }
}
