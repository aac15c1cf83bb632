// The checksum resync's digest: SHA-256 (swift-crypto) of one 4 MiB resync block, computed the
// way PrimaryReplication does it (over the raw buffer, digest copied into an array).
// Bytes per second = ops/s × 4 MiB.
import Benchmark
import Crypto
import Foundation

let benchmarks: @Sendable () -> Void = {
    let block = (0..<(4 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 131) }

    // One iteration = one digest of 4 MiB.
    Benchmark("SHA-256 of a 4 MiB block",
              configuration: .init(metrics: [.wallClock, .throughput, .mallocCountTotal])) { _ in
        let digest = block.withUnsafeBytes { Array(SHA256.hash(data: $0)) }
        blackHole(digest)
    }
}
