import Foundation
import SystemCalls

/// A process the harness started, found through its pidfile and identity-checked against its
/// command line before any signal is sent (a pidfile is stale after SIGKILL and its PID may
/// have been reused by something else).
public struct OwnedProcess: Sendable {
    public let pidFile: String
    /// Substrings that must all appear in `/proc/<pid>/cmdline` (NUL bytes read as spaces).
    public let identity: [String]

    public init(pidFile: String, identity: [String]) {
        self.pidFile = pidFile
        self.identity = identity
    }

    /// The PID if the pidfile names a live (non-zombie) process that matches ``identity``.
    public var pid: pid_t? {
        guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
              let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1,
              Self.isAlive(pid), let cmdline = Self.commandLine(pid)
        else { return nil }
        return identity.allSatisfy { cmdline.contains($0) } ? pid : nil
    }

    /// Sends `signal` if the process is ours and alive, then waits until it is gone or a zombie.
    @discardableResult
    public func kill(_ signal: Int32 = SIGTERM, timeout: Duration = .seconds(10)) -> Bool {
        guard let pid else { return false }
        _ = try? Syscall.call("kill") { Glibc.kill(pid, signal) }
        return Self.waitGone(pid, timeout: timeout)
    }

    public static func commandLine(_ pid: pid_t) -> String? {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return nil }
        return String(decoding: data.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
    }

    /// Exists and is not a zombie. PID 1 here reaps orphans lazily, so a killed daemon can sit
    /// in state Z for seconds; that counts as gone.
    public static func isAlive(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")")
        else { return false }
        let state = stat[stat.index(close, offsetBy: 2)]
        return state != "Z" && state != "X"
    }

    public static func waitGone(_ pid: pid_t, timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while isAlive(pid) {
            if ContinuousClock.now > deadline { return false }
            usleep(50_000)
        }
        return true
    }
}
