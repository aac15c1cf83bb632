import Foundation

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
    /// with stderr on a non-zero exit.
    @discardableResult
    public static func run(_ arguments: [String], stdin: Data? = nil) throws -> String {
        precondition(!arguments.isEmpty)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        env["LC_ALL"] = "C"
        process.environment = env
        // Files, not pipes: daemons that fork keep inherited pipes open and would block a
        // pipe reader until they exit.
        let out = try TemporaryFile()
        let err = try TemporaryFile()
        process.standardOutput = out.handle
        process.standardError = err.handle
        let input = Pipe()
        process.standardInput = stdin == nil ? FileHandle.nullDevice : input
        try process.run()
        if let stdin {
            input.fileHandleForWriting.write(stdin)
            try? input.fileHandleForWriting.close()
        }
        process.waitUntilExit()
        let stdout = out.contents()
        let stderr = err.contents()
        guard process.terminationReason == .exit, process.terminationStatus == 0 else {
            throw ShellError(command: arguments, status: process.terminationStatus, stderr: stderr, stdout: stdout)
        }
        return stdout
    }

    /// Like ``run(_:stdin:)`` but never throws; for best-effort cleanup.
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
    private let path: String

    init() throws {
        var template = Array((NSTemporaryDirectory() + "/vmha-shell-XXXXXX").utf8CString)
        let fd = mkstemp(&template)
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        unlink(path)
        handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
    }

    func contents() -> String {
        _ = try? handle.seek(toOffset: 0)
        let data = (try? handle.readToEnd()) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}
