// DirtyBitmap on a 1 TiB volume with the default 64 KiB grains (16 Mi grains, a 2 MiB bitmap):
// the write path (mark a 4 KiB write dirty), the resync path (walk the dirty runs) and the
// metadata path (serialize the bitmap, whole or one 4 KiB block).
import Benchmark
import Volume

let benchmarks: @Sendable () -> Void = {
    let tebibyte: UInt64 = 1 << 40
    let metrics: [BenchmarkMetric] = [.wallClock, .throughput, .mallocCountTotal]

    // 100k scattered 4 KiB-aligned offsets (a golden-ratio Weyl sequence), the same on every run.
    let offsets = (1...100_000).map { i in (UInt64(i) &* 0x9E37_79B9_7F4A_7C15) % (tebibyte / 4096) * 4096 }

    // A sparse bitmap: 100k scattered 4 KiB writes, about 100k runs.
    var sparse = try! DirtyBitmap(volumeSize: tebibyte)
    for o in offsets { try! sparse.set(offset: o, length: 4096) }
    let empty = try! DirtyBitmap(volumeSize: tebibyte)

    // One iteration = one 4 KiB write marked dirty.
    var target = try! DirtyBitmap(volumeSize: tebibyte)
    var next = 0
    Benchmark("set 4 KiB range (1 TiB, 64 KiB grains)",
              configuration: .init(metrics: metrics, scalingFactor: .kilo)) { benchmark in
        for _ in benchmark.scaledIterations {
            try! target.set(offset: offsets[next], length: 4096)
            next = next == offsets.count - 1 ? 0 : next + 1
        }
        blackHole(target.setCount)
    }

    // One iteration = one walk over all 16 Mi grains.
    Benchmark("iterate runs, sparse (1 TiB, 100k dirty 4 KiB writes)",
              configuration: .init(metrics: metrics)) { _ in
        var runs = 0
        var bytes: UInt64 = 0
        for run in sparse.runs {
            runs += 1
            bytes += run.length
        }
        blackHole(runs)
        blackHole(bytes)
    }

    Benchmark("iterate runs, clean (1 TiB)", configuration: .init(metrics: metrics)) { _ in
        var runs = 0
        for _ in empty.runs { runs += 1 }
        blackHole(runs)
    }

    // One iteration = the whole 2 MiB bitmap as bytes.
    Benchmark("serialize whole bitmap (1 TiB -> 2 MiB)", configuration: .init(metrics: metrics)) { _ in
        blackHole(sparse.serialized())
    }

    // One iteration = one 4 KiB metadata block (what a dirty-bit writeback persists).
    let blocks = sparse.blockCount()
    var block = 0
    Benchmark("serialize one 4 KiB block", configuration: .init(metrics: metrics, scalingFactor: .kilo)) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(sparse.serializedBlock(block))
            block = block == blocks - 1 ? 0 : block + 1
        }
    }
}

