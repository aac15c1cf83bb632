import Foundation
import SystemCalls

/// A command that failed, with everything needed to see why.
public struct ShellError: Error, Sendable, CustomStringConvertible {
    public var command: [String]
    public var status: Int32
    public var stderr: String
    public var stdout: String

    public var description: String {
        let err = stderr.trimmingCharacters(in: .whitespacesAndNewlines)
        return "`\(command.joined(separator: " "))` exited \(status)" + (err.isEmpty ? "" : ": \(err)")
    }
}

/// Runs external commands (ip, tc, libvirtd, qemu-nbd, …) through Foundation `Process`.
public enum Shell {
    /// Runs `arguments[0]` (looked up in PATH) and returns its stdout; throws ``ShellError``
    /// with stderr on a non-zero exit. Blocks the calling thread.
    ///
    /// Uses posix_spawn + waitpid rather than Foundation's `Process`: on Linux, `Process` learns
    /// about the exit through a socket the child inherits, so a daemon the command starts
    /// (libvirtd -d, qemu-nbd --fork) keeps `waitUntilExit()` blocked for the daemon's lifetime.
    @discardableResult
    public static func run(_ arguments: [String]) throws -> String {
        precondition(!arguments.isEmpty)
        let out = try TemporaryFile()
        let err = try TemporaryFile()
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, out.fd, 1)
        posix_spawn_file_actions_adddup2(&actions, err.fd, 2)
        var env = ProcessInfo.processInfo.environment
        env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        env["LC_ALL"] = "C"
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        do {
            try Syscall.callReturningErrorNumber("posix_spawnp") { posix_spawnp(&pid, arguments[0], &actions, nil, argv, envp) }
        } catch {
            throw ShellError(command: arguments, status: -1, stderr: "spawn failed: \(error.errno)", stdout: "")
        }
        var status: Int32 = 0
        _ = try? Syscall.call("waitpid") { waitpid(pid, &status, 0) }
        let stdout = out.contents()
        let stderr = err.contents()
        // WIFEXITED / WEXITSTATUS are macros; decode the wait status by hand.
        let exited = status & 0x7f == 0
        let code = exited ? (status >> 8) & 0xff : -(status & 0x7f)
        guard exited, code == 0 else {
            throw ShellError(command: arguments, status: code, stderr: stderr, stdout: stdout)
        }
        return stdout
    }

    /// Like ``run(_:)`` but never throws; for best-effort cleanup.
    public static func attempt(_ arguments: [String]) -> Bool {
        (try? run(arguments)) != nil
    }

    /// Async wrapper that keeps the blocking wait off the cooperative pool.
    @discardableResult
    public static func run(async arguments: [String]) async throws -> String {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Result { try run(arguments) })
            }
        }
    }
}

/// An unlinked temporary file used to capture a child's output.
private final class TemporaryFile {
    let handle: FileHandle
    var fd: Int32 { handle.fileDescriptor }
    private let path: String

    init() throws {
        var template = Array((NSTemporaryDirectory() + "/vmha-shell-XXXXXX").utf8CString)
        // CLOEXEC: only the dup2'ed copies may reach the child (and any daemon it starts).
        let fd = try Syscall.call("mkstemp") { mkstemp(&template) }
        try Syscall.call("fcntl") { fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        self.path = path
        _ = try? Syscall.call("unlink") { unlink(path) }  // the open descriptor keeps the file
        handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
    }

    func contents() -> String {
        _ = try? handle.seek(toOffset: 0)
        let data = (try? handle.readToEnd()) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}
