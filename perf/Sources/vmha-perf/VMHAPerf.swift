import ArgumentParser
import Foundation

/// The measuring side of perf/: each subcommand measures vmha itself and prints one JSON line.
/// `perf/run` measures the baselines (fio, qemu-nbd, iperf3) in the same run and computes ratios.
@main
struct VMHAPerf: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vmha-perf",
        abstract: "vmha benchmarks (run them all with perf/run)",
        subcommands: [Engine.self])

    struct Engine: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The io_uring engine: fixed queue depth of O_DIRECT requests on one file.")

        @Option(help: "An existing, fully allocated file.") var file: String
        @Option(help: "randwrite, write, randread or read.") var pattern: String = "randwrite"
        @Option(help: "Block size in bytes.") var blockSize: Int = 4096
        @Option(help: "Requests in flight.") var queueDepth: Int = 32
        @Option(help: "Duration in seconds.") var seconds: Double = 10

        func run() async throws {
            guard let pattern = EngineBenchmark.Pattern(rawValue: pattern) else {
                throw ValidationError("unknown pattern '\(pattern)'")
            }
            let result = try await EngineBenchmark(
                path: file, pattern: pattern, blockSize: blockSize, queueDepth: queueDepth, seconds: seconds
            ).run()
            let line: [String: Double] = [
                "iops": result.iops, "bytes_per_second": result.bytesPerSecond, "seconds": result.seconds,
            ]
            let json = try JSONSerialization.data(withJSONObject: line, options: [.sortedKeys])
            print(String(decoding: json, as: UTF8.self))
        }
    }
}
