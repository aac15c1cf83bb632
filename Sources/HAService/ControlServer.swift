import Cluster
import Foundation
import Logging
import Sockets
import SystemCalls
import SystemPackage
import Uring

#if canImport(Glibc)
import Glibc
#endif

/// The control API: JSON lines on a UNIX socket only root can use (mode 0600). Accepts and
/// serves on the ring (no thread of its own): one task per connection reads one request line,
/// asks the node, writes the answer.
final class ControlServer: Sendable {
    let path: String
    let listener: FileDescriptor
    let node: ClusterNode
    let ring: IOUring
    let logger: Logger
    static let maximumRequest = 65536

    init(path: String, node: ClusterNode, ring: IOUring, logger: Logger) throws {
        self.path = path
        self.node = node
        self.ring = ring
        self.logger = logger
        _ = try? Syscall.call("unlink") { unlink(path) }  // ENOENT (nothing stale there) is the usual case
        listener = try UnixSocket.listen(path: path)
        try UnixSocket.setPermissions(path: path, mode: 0o600, owner: 0, group: 0)
    }

    /// Serves until cancelled; then the listener is closed and the socket file removed.
    func run() async {
        defer {
            try? listener.close()
            _ = try? Syscall.call("unlink") { unlink(path) }
        }
        await withDiscardingTaskGroup { group in
            while !Task.isCancelled {
                let client: FileDescriptor
                do {
                    client = try await ring.accept(.file(listener))
                } catch .canceled {
                    break
                } catch {
                    logger.error("control API: accept failed: \(error)")
                    try? await ring.sleep(for: .milliseconds(100))  // e.g. EMFILE: do not spin
                    continue
                }
                group.addTask(executorPreference: ring) { await self.serve(client) }
            }
            group.cancelAll()
        }
    }

    private func serve(_ client: FileDescriptor) async {
        defer { try? client.close() }
        let response: ControlResponse
        switch await readLine(client) {
        case .some(let line):
            if let request = try? JSONDecoder().decode(ControlRequest.self, from: Data(line)) {
                // Off the ring (see `ClusterNode.startReceiver`).
                let node = self.node
                response = await withTaskExecutorPreference(globalConcurrentExecutor) { await node.handle(request) }
            } else {
                response = ControlResponse(ok: false, error: "malformed request")
            }
        case .none:
            response = ControlResponse(ok: false, error: "request longer than \(Self.maximumRequest) bytes or cut off")
        }
        var bytes = Array((try? JSONEncoder().encode(response)) ?? Data("{\"ok\":false}".utf8))
        bytes.append(UInt8(ascii: "\n"))
        try? await ring.sendAll(.file(client), bytes: bytes)
    }

    /// The bytes up to the first newline (or the end of the stream); nil if longer than the limit.
    private func readLine(_ client: FileDescriptor) async -> [UInt8]? {
        var line: [UInt8] = []
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 8)
        defer { buffer.deallocate() }
        while line.count <= Self.maximumRequest {
            let count: Int
            do { count = try await ring.recv(.file(client), into: buffer) } catch { return line.isEmpty ? nil : line }
            if count == 0 { return line }
            let chunk = buffer[0..<count]
            if let newline = chunk.firstIndex(of: UInt8(ascii: "\n")) {
                line += chunk[..<newline]
                return line.count <= Self.maximumRequest ? line : nil
            }
            line += chunk
        }
        return nil
    }
}
