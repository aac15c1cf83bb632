import Foundation
import Logging
import SystemCalls
import SystemPackage
import Testing
import Uring
@testable import Volume

#if canImport(Glibc)
import Glibc
#endif

/// A real image served by a real NBD server over a UNIX socket, torn down on every path.
final class ExportFixture: Sendable {
    let directory: String
    let imagePath: String
    let metadataPath: String
    let socketPath: String
    let name: String

    init(size: UInt64, name: String = "disk0", qcow2VirtualSize: UInt64? = nil) throws {
        directory = NSTemporaryDirectory() + "vmha-volume-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        imagePath = directory + "/image"
        metadataPath = directory + "/image.vmha"
        socketPath = directory + "/nbd.sock"
        self.name = name
        if let virtual = qcow2VirtualSize {
            try run("/usr/bin/qemu-img", ["create", "-q", "-f", "qcow2", imagePath, "\(virtual)"])
        } else {
            let fd = try FileDescriptor.open(imagePath, .readWrite, options: [.create], permissions: [.ownerReadWrite])
            try Syscall.call("ftruncate") { ftruncate(fd.rawValue, off_t(size)) }
            try fd.close()
        }
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    var uri: String { "nbd+unix:///\(name)?socket=\(socketPath)" }

    var configuration: LocalVolume.Configuration {
        LocalVolume.Configuration(name: name, imagePath: imagePath, metadataPath: metadataPath)
    }

    /// Opens the volume, serves it while `body` runs, then stops the server and closes the volume.
    func serve<T>(handshakeTimeout: Duration = .seconds(10), _ body: (LocalVolume) async throws -> T) async throws -> T {
        let ring = try IOUring(logger: Logger(label: "test"))
        let volume: LocalVolume
        do {
            volume = try await LocalVolume.open(configuration, ring: ring, logger: Logger(label: "test"))
        } catch {
            await ring.shutdown()
            throw error
        }
        var server = try NBDServer(volume: volume, socket: .init(path: socketPath, mode: 0o600), logger: Logger(label: "test"))
        server.handshakeTimeout = handshakeTimeout
        let serving = Task(executorPreference: ring) { try await server.run() }
        for _ in 0..<100 where access(socketPath, F_OK) != 0 { try await Task.sleep(for: .milliseconds(10)) }
        do {
            let result = try await body(volume)
            serving.cancel()
            _ = try? await serving.value
            try await volume.close()
            await ring.shutdown()
            return result
        } catch {
            serving.cancel()
            _ = try? await serving.value
            try? await volume.close()
            await ring.shutdown()
            throw error
        }
    }
}

struct CommandFailed: Error, CustomStringConvertible {
    var command: String
    var status: Int32
    var output: String
    var description: String { "\(command) exited \(status): \(output)" }
}

/// Runs a program to completion; throws with its output when it fails.
@discardableResult
func run(_ executable: String, _ arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let output = String(decoding: data, as: UTF8.self)
    guard process.terminationStatus == 0 else {
        throw CommandFailed(command: ([executable] + arguments).joined(separator: " "), status: process.terminationStatus, output: output)
    }
    return output
}

/// `run` off the cooperative pool: fio and qemu-img block for seconds.
func runDetached(_ executable: String, _ arguments: [String]) async throws -> String {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread {
            continuation.resume(with: Result { try run(executable, arguments) })
        }
    }
}
