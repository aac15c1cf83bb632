import Foundation
import SystemCalls

#if canImport(Glibc)
import Glibc
#endif

/// Two network namespaces joined by a veth pair, optionally shaped with `tc tbf` on both ends:
/// two "hosts" for daemons that need no libvirt (replication tests, `vmha bench`). Names and
/// addresses are unique per instance; ``destroy()`` removes everything (deleting a namespace
/// kills the veth and every socket in it).
public final class NetworkPair: Sendable {
    public let names: (String, String)
    public let addresses: (String, String)

    /// - Parameter shaping: `tbf` rate applied to both ends, e.g. `.gigabit`.
    public init(shaping: TestCluster.LinkShaping? = nil) throws {
        let run = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        let subnet = Int.random(in: 1...254)
        names = ("vmha-\(run)-a", "vmha-\(run)-b")
        addresses = ("10.88.\(subnet).1", "10.88.\(subnet).2")
        let veth = ("vp\(run.prefix(8))a", "vp\(run.prefix(8))b")
        do {
            for name in [names.0, names.1] {
                try Shell.run(["ip", "netns", "add", name])
                try Shell.run(["ip", "-n", name, "link", "set", "lo", "up"])
            }
            try Shell.run(["ip", "link", "add", veth.0, "type", "veth", "peer", "name", veth.1])
            try Shell.run(["ip", "link", "set", veth.0, "netns", names.0])
            try Shell.run(["ip", "link", "set", veth.1, "netns", names.1])
            for (name, address, device) in [(names.0, addresses.0, veth.0), (names.1, addresses.1, veth.1)] {
                try Shell.run(["ip", "-n", name, "addr", "add", "\(address)/24", "dev", device])
                try Shell.run(["ip", "-n", name, "link", "set", device, "up"])
                if let shaping {
                    try Shell.run(["ip", "netns", "exec", name, "tc", "qdisc", "add", "dev", device, "root", "tbf"] + shaping.tbf)
                }
            }
        } catch {
            Self.delete(names)
            throw error
        }
    }

    /// Runs a command inside namespace 0 or 1.
    @discardableResult
    public func run(in host: Int, _ arguments: [String]) async throws -> String {
        try await Shell.run(async: ["ip", "netns", "exec", host == 0 ? names.0 : names.1] + arguments)
    }

    public func destroy() {
        Self.delete(names)
    }

    private static func delete(_ names: (String, String)) {
        _ = Shell.attempt(["ip", "netns", "del", names.0])
        _ = Shell.attempt(["ip", "netns", "del", names.1])
    }
}

/// A long-running program started inside a network namespace, its stdout+stderr in a log file.
/// Killed (SIGKILL) on deinit if still running, so a failing test leaves nothing behind.
public final class NamespacedDaemon: @unchecked Sendable {
    public let process = Process()
    public let logPath: String

    /// `environment` is added to this process's own.
    public init(namespace: String, executable: String, arguments: [String], environment: [String: String] = [:], logPath: String) throws {
        self.logPath = logPath
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        process.arguments = ["netns", "exec", namespace, executable] + arguments
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        try process.run()
        try? log.close()
    }

    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Log lines containing `text`.
    public func lines(containing text: String) -> [String] {
        log.split(separator: "\n").filter { $0.contains(text) }.map(String.init)
    }

    /// Waits until the log has at least `count` lines containing `text`.
    public func waitForLog(_ text: String, count: Int = 1, timeout: Duration = .seconds(30)) async throws {
        let deadline = ContinuousClock.now + timeout
        while lines(containing: text).count < count {
            guard process.isRunning else { throw DaemonError.exited(status: process.terminationStatus, log: log) }
            guard ContinuousClock.now < deadline else { throw DaemonError.timedOut(waitingFor: text, log: log) }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Sends `signal` and waits for the process to end (SIGKILL after `timeout`).
    public func stop(_ signal: Int32 = SIGTERM, timeout: Duration = .seconds(15)) async {
        guard process.isRunning else { return }
        _ = try? Syscall.call("kill") { Glibc.kill(process.processIdentifier, signal) }
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        kill()
    }

    /// SIGKILL at once (a hard crash), without waiting.
    public func kill() {
        if process.isRunning { _ = try? Syscall.call("kill") { Glibc.kill(process.processIdentifier, SIGKILL) } }
    }

    deinit { kill() }

    public enum DaemonError: Error, CustomStringConvertible {
        case exited(status: Int32, log: String)
        case timedOut(waitingFor: String, log: String)

        public var description: String {
            switch self {
            case .exited(let status, let log): "daemon exited with \(status):\n\(log)"
            case .timedOut(let text, let log): "timed out waiting for '\(text)' in the daemon's log:\n\(log)"
            }
        }
    }
}
