import ArgumentParser
import Dispatch
import Foundation
import Simulation
import Synchronization

/// Runs N fault schedules against two hosts' decision code and checks the invariants.
@main
struct VMHASim: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vmha-sim",
        abstract: "Deterministic simulator of two vmha hosts and a witness (docs/simulator.md).",
        discussion: """
            Schedule i runs with seed SEED+i: one to four faults (host crashes, vmhad restarts, cut
            networks, an isolated host, a witness down or unreachable, operator switchovers) in the
            first 40 s, all healed by 60 s, checked every 50 ms tick and for convergence at 120 s.
            The same seed replays the same schedule exactly. Exit status 1 when any invariant fails.
            """)

    @Option(help: "How many schedules to run.")
    var schedules: Int = 1000

    @Option(help: "Seed of the first schedule (default: random, printed).")
    var seed: UInt64?

    @Flag(help: "Print one JSON object: schedules, violations, seed, simulated_seconds, failures.")
    var json = false

    @Flag(help: "Print each failing schedule's faults and violations (first 10).")
    var verbose = false

    @Option(help: "At most this many faults per schedule (1–8).")
    var maxFaults: Int = 4

    @Flag(help: "With --schedules 1: print every fault and module transition as it happens.")
    var trace = false

    func validate() throws {
        guard schedules > 0 else { throw ValidationError("--schedules must be at least 1") }
        guard (1...8).contains(maxFaults) else { throw ValidationError("--max-faults must be 1 to 8") }
    }

    func run() throws {
        let first = seed ?? UInt64.random(in: 0..<(1 << 32))
        let count = schedules
        let failures = Mutex<[ScheduleResult]>([])
        let simulated = Mutex<Int64>(0)
        let started = ContinuousClock.now
        let chunk = 64
        let maxFaults = self.maxFaults
        let tracing = trace && count == 1
        DispatchQueue.concurrentPerform(iterations: (count + chunk - 1) / chunk) { part in
            let (failed, milliseconds) = Self.run(seeds: (part * chunk)..<min(count, (part + 1) * chunk), from: first, maxFaults: maxFaults, tracing: tracing)
            failures.withLock { $0 += failed }
            simulated.withLock { $0 += milliseconds }
        }
        let failed = failures.withLock { $0 }.sorted { $0.schedule.seed < $1.schedule.seed }
        let violations = failed.reduce(0) { $0 + $1.violations.count }
        let seconds = Double(simulated.withLock { $0 }) / 1000
        if json {
            let report = Report(
                schedules: count, violations: violations, seed: first, simulatedSeconds: seconds,
                failures: failed.prefix(20).map { .init(seed: $0.schedule.seed, faults: $0.schedule.steps.map { "\(Double($0.atMS) / 1000) s: \($0.fault)" }, violations: $0.violations.map(\.description)) })
            let encoder = JSONEncoder()
            encoder.keyEncodingStrategy = .convertToSnakeCase
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            let byInvariant = Dictionary(grouping: failed.flatMap(\.violations), by: \.invariant).mapValues(\.count)
            print("\(count) schedules from seed \(first): \(violations) violation\(violations == 1 ? "" : "s") in \(failed.count) schedule\(failed.count == 1 ? "" : "s"); \(Int(seconds)) simulated s in \(started.duration(to: .now))")
            for (invariant, n) in byInvariant.sorted(by: { $0.key.rawValue < $1.key.rawValue }) { print("  \(invariant.rawValue): \(n)") }
            for result in failed.prefix(verbose ? 10 : 3) {
                print("seed \(result.schedule.seed) (replay: vmha-sim --schedules 1 --seed \(result.schedule.seed)):")
                for step in result.schedule.steps { print("  \(Double(step.atMS) / 1000) s: \(step.fault)") }
                for violation in result.violations { print("  ✘ \(violation)") }
            }
        }
        if violations > 0 { throw ExitCode(1) }
    }

    /// Runs schedules `first + i` for i in `indices`: the failing ones, and the simulated time.
    static func run(seeds indices: Range<Int>, from first: UInt64, maxFaults: Int, tracing: Bool) -> ([ScheduleResult], Int64) {
        var failed: [ScheduleResult] = []
        var milliseconds: Int64 = 0
        let printer: (@Sendable (String) -> Void)? = tracing ? printLine : nil
        for i in indices {
            let result = Simulator.run(seed: first &+ UInt64(i), maxFaults: maxFaults, trace: printer)
            milliseconds += result.simulatedMS
            if !result.violations.isEmpty { failed.append(result) }
        }
        return (failed, milliseconds)
    }

    @Sendable static func printLine(_ line: String) { print(line) }

    struct Report: Encodable {
        struct Failure: Encodable {
            var seed: UInt64
            var faults: [String]
            var violations: [String]
        }
        var schedules: Int
        var violations: Int
        var seed: UInt64
        var simulatedSeconds: Double
        var failures: [Failure]
    }
}
