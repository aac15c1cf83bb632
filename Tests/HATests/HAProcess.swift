import Cluster
import Foundation
import Harness

#if canImport(Glibc)
import Glibc
#endif

/// The built products next to the test bundle (`swift build` first).
func builtProduct(_ name: String) throws -> String {
    let exe = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
    var directory = URL(fileURLWithPath: exe).deletingLastPathComponent()
    while directory.pathExtension == "xctest" || directory.lastPathComponent == "MacOS" {
        directory = directory.deletingLastPathComponent()
    }
    let path = directory.appendingPathComponent(name).path
    guard FileManager.default.isExecutableFile(atPath: path) else {
        throw HATestError("\(path) not built: run `swift build` first")
    }
    return path
}

struct HATestError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A long-running program (vmhad, vmha witness) inside a simulated host's network namespace,
/// output to a log file; killed (SIGKILL) by `kill()` or when the test ends.
final class NetnsProcess: @unchecked Sendable {
    let process = Process()
    let log: String

    init(netns: String, arguments: [String], log: String) throws {
        self.log = log
        FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
        // The netns only: the bind mounts of the host's libvirt directories are not needed.
        process.arguments = ["--net=/run/netns/\(netns)", "--"] + arguments
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
    }

    var isRunning: Bool { process.isRunning }

    func kill(_ signal: Int32 = SIGKILL) {
        if process.isRunning { Glibc.kill(process.processIdentifier, signal) }
    }

    func terminate(timeout: Duration = .seconds(15)) async {
        kill(SIGTERM)
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(100)) }
        kill(SIGKILL)
    }

    func output() -> String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    deinit { kill() }
}

/// Runs `vmha` to completion; returns (exit status, stdout+stderr).
func runTool(_ arguments: [String]) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: arguments[0])
    process.arguments = Array(arguments.dropFirst())
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// `vmha status --json` against one host's control socket.
func status(socket: String) throws -> ClusterStatusReport? {
    let (code, output) = try runTool([try builtProduct("vmha"), "status", "--json", "--socket", socket])
    guard code == 0 else { return nil }
    return try? JSONDecoder().decode(ClusterStatusReport.self, from: Data(output.utf8))
}

func waitUntil(_ what: String, timeout: Duration, _ condition: () throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if (try? condition()) == true { return }
        try await Task.sleep(for: .milliseconds(250))
    }
    throw HATestError("timed out after \(timeout) waiting for \(what)")
}
