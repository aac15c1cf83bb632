import ArgumentParser
import Foundation
import Logging

/// The measuring side of perf/: each subcommand measures vmha itself and prints one JSON line.
/// `perf/run` measures the baselines (fio, qemu-nbd, iperf3) in the same run and computes ratios.
@main
struct VMHAPerf: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vmha-perf",
        abstract: "vmha benchmarks (run them all with perf/run)",
        subcommands: [Engine.self, Failover.self, Idle.self])

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

    struct Failover: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "HA failover (kill of host A → guest verified on B) and its baseline (detection timeout + cold boot), needs root.")

        @Option(help: "The vmhad to run on the simulated hosts.") var vmhad: String
        @Option(help: "The vmha to run the witness and status with.") var vmha: String
        @Option(help: "Repetitions, each on a fresh cluster; the medians are reported.") var runs: Int = 1

        func run() async throws {
            let benchmark = FailoverBenchmark(vmhad: vmhad, vmha: vmha, logger: quietLogger())
            var results: [FailoverBenchmark.Result] = []
            for _ in 0..<max(1, runs) { results.append(try await benchmark.run()) }
            try printJSON(FailoverBenchmark.Summary(results))
        }
    }

    struct Idle: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "vmhad CPU and memory with N replicated idle VMs on two simulated hosts, and the baselines, needs root.")

        @Option(help: "The vmhad to run on the simulated hosts.") var vmhad: String
        @Option(help: "The vmha to run the witness and status with.") var vmha: String
        @Option(help: "Idle VMs, half preferring each host.") var vms: Int = 25
        @Option(help: "CPU sampling window in seconds.") var seconds: Double = 60

        func run() async throws {
            let result = try await IdleBenchmark(vmhad: vmhad, vmha: vmha, count: vms, seconds: seconds, logger: quietLogger()).run()
            try printJSON(result)
        }
    }
}

/// Warnings and errors on stderr: stdout carries only the JSON result.
private func quietLogger() -> Logger {
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = .warning
        return handler
    }
    return Logger(label: "vmha.perf")
}

private func printJSON(_ value: some Encodable) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}
