import Foundation
import SystemCalls

#if canImport(Glibc)
import Glibc
#endif

/// What a benchmark step could not do, with the command and its output.
struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Everything a benchmark creates registers its removal here; `runAll()` undoes it in reverse
/// order exactly once — from `defer` on every normal or error path, and from SIGINT/SIGTERM.
final class BenchCleanup: @unchecked Sendable {  // state behind `lock`
    static let shared = BenchCleanup()
    private let lock = NSLock()
    private var actions: [(id: Int, name: String, action: () -> Void)] = []
    private var nextID = 0
    private var signalSources: [any DispatchSourceSignal] = []

    /// Registers an undo action; returns a token to run it early with `run(_:)`.
    @discardableResult
    func add(_ name: String, _ action: @escaping () -> Void) -> Int {
        lock.lock()
        defer { lock.unlock() }
        nextID += 1
        actions.append((nextID, name, action))
        return nextID
    }

    /// Runs one registered action now (and forgets it).
    func run(_ id: Int) {
        lock.lock()
        let index = actions.firstIndex { $0.id == id }
        let entry = index.map { actions.remove(at: $0) }
        lock.unlock()
        entry?.action()
    }

    /// Held for a whole `runAll`: the signal handler's and the main thread's cleanups (an
    /// interrupted step throws, and its `defer` cleans up too) must not interleave, or the signal
    /// path could `exit` while the other is still waiting for a helper to stop.
    private let runLock = NSLock()

    func runAll() {
        runLock.lock()
        defer { runLock.unlock() }
        while true {
            lock.lock()
            let entry = actions.popLast()
            lock.unlock()
            guard let entry else { return }
            entry.action()
        }
    }

    /// SIGINT/SIGTERM: clean up, then exit 130/143.
    func installSignalHandlers() {
        for signo in [SIGINT, SIGTERM] {
            signal(signo, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signo, queue: .global())
            source.setEventHandler { [self] in
                FileHandle.standardError.write("vmha bench: signal \(signo), cleaning up\n".data(using: .utf8)!)
                runAll()
                exit(128 + signo)
            }
            source.resume()
            lock.lock()
            signalSources.append(source)
            lock.unlock()
        }
    }
}

/// Runs external commands, optionally inside a network namespace.
enum Shell {
    static func resolve(_ name: String) -> String? {
        func executable(_ path: String) -> Bool {
            var info = stat()
            return (try? Syscall.call("stat") { stat(path, &info) }) != nil && (info.st_mode & S_IFMT) == S_IFREG
                && (try? Syscall.call("access") { access(path, X_OK) }) != nil
        }
        if name.contains("/") { return executable(name) ? name : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let dirs = path.split(separator: ":").map(String.init) + ["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        return dirs.lazy.map { "\($0)/\(name)" }.first(where: executable)
    }

    static func inNamespace(_ ns: String?, _ args: [String]) -> [String] {
        guard let ns else { return args }
        return ["ip", "netns", "exec", ns] + args
    }

    /// Runs to completion; returns stdout. Throws with stderr when the exit status is not 0.
    @discardableResult
    static func run(_ args: [String], ns: String? = nil, timeout: Double = 600) throws -> String {
        let full = inNamespace(ns, args)
        let (status, out, err) = try capture(full, timeout: timeout)
        guard status == 0 else {
            throw BenchError("`\(full.joined(separator: " "))` exited with \(status): \(err.trimmingCharacters(in: .whitespacesAndNewlines).suffix(2000))")
        }
        return out
    }

    /// `/bin/sh -c script`, for pipelines.
    @discardableResult
    static func sh(_ script: String, ns: String? = nil, timeout: Double = 600) throws -> String {
        try run(["/bin/sh", "-c", script], ns: ns, timeout: timeout)
    }

    static func capture(_ args: [String], timeout: Double) throws -> (Int32, String, String) {
        guard let executable = resolve(args[0]) else { throw BenchError("\(args[0]): not found (install it: scripts/install-deps)") }
        let dir = FileManager.default.temporaryDirectory
        let outURL = dir.appendingPathComponent("vmha-bench-\(getpid())-\(UUID().uuidString).out")
        let errURL = dir.appendingPathComponent("vmha-bench-\(getpid())-\(UUID().uuidString).err")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        defer {
            try? FileManager.default.removeItem(at: outURL)
            try? FileManager.default.removeItem(at: errURL)
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = Array(args.dropFirst())
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = try FileHandle(forWritingTo: outURL)
        process.standardError = try FileHandle(forWritingTo: errURL)
        try process.run()
        let pid = process.processIdentifier
        let token = BenchCleanup.shared.add("kill \(args[0]) \(pid)") { _ = try? Syscall.call("kill") { kill(pid, SIGKILL) } }
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning {
            if Date() > deadline {
                _ = try? Syscall.call("kill") { kill(pid, SIGKILL) }
                process.waitUntilExit()
                BenchCleanup.shared.run(token)
                throw BenchError("`\(args.joined(separator: " "))` did not finish within \(Int(timeout)) s")
            }
            usleep(20_000)
        }
        process.waitUntilExit()
        BenchCleanup.shared.run(token)  // it exited: nothing to kill (and the PID may be reused)
        let out = (try? String(contentsOf: outURL, encoding: .utf8)) ?? ""
        let err = (try? String(contentsOf: errURL, encoding: .utf8)) ?? ""
        return (process.terminationStatus, out, err)
    }
}

/// A long-running helper (vmhad, iperf3 -s, rsync --daemon) with its output in a log file.
/// Registered for cleanup: SIGTERM, then SIGKILL after a grace period.
final class BackgroundProcess: @unchecked Sendable {  // `process` is only used from the benchmark's thread and the cleanup
    let name: String
    let logPath: String
    private let process: Process
    private var cleanupToken = 0

    init(_ name: String, _ args: [String], ns: String? = nil, logPath: String) throws {
        self.name = name
        self.logPath = logPath
        let full = Shell.inNamespace(ns, args)
        guard let executable = Shell.resolve(full[0]) else { throw BenchError("\(full[0]): not found") }
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        log.seekToEndOfFile()
        process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = Array(full.dropFirst())
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = log
        process.standardError = log
        try process.run()
        // `ip netns exec` execs the command in place: this PID is the helper itself.
        let process = self.process
        cleanupToken = BenchCleanup.shared.add("stop \(name)") { Self.terminate(process, grace: 10) }
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }

    /// SIGTERM and wait (SIGKILL after `grace` seconds); returns the exit status (128 + signal
    /// when a signal ended it).
    @discardableResult
    func stop(grace: Double = 30) -> Int32 {
        BenchCleanup.shared.run(cleanupToken)
        Self.terminate(process, grace: grace)
        return process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
    }

    private static func terminate(_ process: Process, grace: Double) {
        guard process.isRunning else { return }
        _ = try? Syscall.call("kill") { kill(process.processIdentifier, SIGTERM) }
        let deadline = Date().addingTimeInterval(grace)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            _ = try? Syscall.call("kill") { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Waits until `predicate(log)` holds; throws (with the log's tail) on timeout or early exit.
    func waitForLog(_ what: String, timeout: Double, _ predicate: (String) -> Bool) throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            let text = log
            if predicate(text) { return text }
            if !process.isRunning {
                throw BenchError("\(name) exited (status \(process.terminationStatus)) while waiting for \(what); log:\n\(text.suffix(3000))")
            }
            if Date() > deadline { throw BenchError("\(name): no \(what) within \(Int(timeout)) s; log:\n\(text.suffix(3000))") }
            usleep(20_000)
        }
    }

    /// CPU seconds (user + system) used so far, from /proc/PID/stat.
    var cpuSeconds: Double? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // after ")": state(0) ppid(1) ... utime(11) stime(12)
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}

/// "64MiB", "4GiB", "4G", "1000000" → bytes.
func parseByteCount(_ text: String) -> UInt64? {
    let units: [(String, UInt64)] = [
        ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("TiB", 1 << 40),
        ("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30), ("T", 1 << 40),
        ("kB", 1000), ("MB", 1_000_000), ("GB", 1_000_000_000),
    ]
    for (suffix, factor) in units where text.hasSuffix(suffix) {
        guard let n = UInt64(text.dropLast(suffix.count)) else { return nil }
        return n.multipliedReportingOverflow(by: factor).overflow ? nil : n * factor
    }
    return UInt64(text)
}

/// The value of `key=` in a swift-log line (`… key=value …`).
func logField(_ key: String, in line: Substring) -> String? {
    guard let range = line.range(of: " \(key)=") ?? line.range(of: "\(key)=") else { return nil }
    return String(line[range.upperBound...].prefix { !$0.isWhitespace })
}
