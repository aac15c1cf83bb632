import Foundation
import Logging
import SystemCalls
import SystemPackage
import Uring

/// Drives the io_uring engine the way `fio --ioengine=io_uring --direct=1` drives the kernel:
/// a fixed queue depth of in-flight writes on one O_DIRECT file for a fixed time.
struct EngineBenchmark {
    enum Pattern: String { case randwrite, write, randread, read }

    var path: String
    var pattern: Pattern
    var blockSize: Int
    var queueDepth: Int
    var seconds: Double

    struct Result: Codable {
        var operations: Int
        var bytes: Int
        var seconds: Double
        var iops: Double { Double(operations) / seconds }
        var bytesPerSecond: Double { Double(bytes) / seconds }
    }

    func run() async throws -> Result {
        let fd = try FileDescriptor.open(path, .readWrite, options: [.direct])
        defer { try? fd.close() }
        let size = Int(try fd.seek(offset: 0, from: .end))
        let blocks = size / blockSize
        precondition(blocks >= queueDepth, "file too small for the benchmark")
        let ring = try IOUring(logger: Logger(label: "bench"))
        try await ring.registerFiles([fd])
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        let start = ContinuousClock.now
        let pattern = self.pattern, blockSize = self.blockSize, queueDepth = self.queueDepth
        let counts = try await withThrowingTaskGroup(of: Int.self) { group in
            for lane in 0..<queueDepth {
                group.addTask(executorPreference: ring) {
                    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: blockSize, alignment: 4096)
                    defer { buffer.deallocate() }
                    for i in 0..<blockSize { buffer[i] = UInt8(truncatingIfNeeded: i &* 31 &+ lane) }
                    // fio uses its own PRNG too; SystemRandomNumberGenerator is a getrandom(2) per number.
                    var generator = SplitMix64(seed: UInt64(lane) &+ 0x9E37_79B9)
                    var done = 0
                    var next = lane
                    while ContinuousClock.now < deadline {
                        // Check the clock once per 64 requests: it is not free.
                        for _ in 0..<64 {
                            let block: Int
                            switch pattern {
                            case .randwrite, .randread: block = Int.random(in: 0..<blocks, using: &generator)
                            case .write, .read:
                                block = next % blocks
                                next += queueDepth
                            }
                            let offset = UInt64(block * blockSize)
                            switch pattern {
                            case .randwrite, .write:
                                _ = try await ring.write(.registered(0), from: UnsafeRawBufferPointer(buffer), at: offset)
                            case .randread, .read:
                                _ = try await ring.read(.registered(0), into: buffer, at: offset)
                            }
                            done += 1
                        }
                    }
                    return done
                }
            }
            return try await group.reduce(0, +)
        }
        let elapsed = ContinuousClock.now - start
        let secondsElapsed = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        await ring.shutdown()
        return Result(operations: counts, bytes: counts * blockSize, seconds: secondsElapsed)
    }
}

/// A fast, seedable PRNG for choosing offsets.
struct SplitMix64: RandomNumberGenerator {
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
