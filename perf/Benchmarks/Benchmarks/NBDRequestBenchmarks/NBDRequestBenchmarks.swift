// The NBD server's request decoder on a stream of WRITE requests, fed in 64 KiB socket reads:
// 4 KiB writes (the common guest I/O) and 1 MiB writes (large sequential I/O).
import Benchmark
import Volume

let benchmarks: @Sendable () -> Void = {
    let metrics: [BenchmarkMetric] = [.wallClock, .throughput, .mallocCountTotal]
    let export = try! NBDExport(name: "bench", size: 1 << 30)

    /// `count` WRITE requests of `length` bytes as 64 KiB reads.
    func reads(count: Int, length: UInt32) -> [[UInt8]] {
        var stream: [UInt8] = []
        for i in 0..<count {
            let offset = UInt64(i) * UInt64(length) % (export.size - UInt64(length) + 1)
            stream += NBDRequest(command: .write, cookie: UInt64(i), offset: offset, length: length,
                                 payload: [UInt8](repeating: 0xAB, count: Int(length))).encoded()
        }
        return stride(from: 0, to: stream.count, by: 64 << 10).map { Array(stream[$0..<min($0 + (64 << 10), stream.count)]) }
    }

    /// Decodes every read; returns the number of requests.
    func decode(_ reads: [[UInt8]], with decoder: inout NBDRequestDecoder) -> Int {
        var requests = 0
        for read in reads {
            decoder.receive(read)
            while let action = try! decoder.next() {
                if case .request(let request) = action {
                    requests += 1
                    blackHole(request)
                }
            }
        }
        return requests
    }

    // One iteration = one 4 KiB WRITE request (1000 per pass over the stream).
    let small = reads(count: 1000, length: 4096)
    var smallDecoder = NBDRequestDecoder(export: export)
    Benchmark("decode 4 KiB WRITE requests", configuration: .init(metrics: metrics, scalingFactor: .kilo)) { _ in
        precondition(decode(small, with: &smallDecoder) == 1000)
    }

    // One iteration = one 1 MiB WRITE request.
    let large = reads(count: 1, length: 1 << 20)
    var largeDecoder = NBDRequestDecoder(export: export)
    Benchmark("decode 1 MiB WRITE requests", configuration: .init(metrics: metrics)) { _ in
        precondition(decode(large, with: &largeDecoder) == 1)
    }
}
