import Cluster
import Foundation
import Logging
import SystemPackage
import Uring

#if canImport(Glibc)
import Glibc
#endif

/// The control API: JSON lines on a UNIX socket only root can use (mode 0600). One thread
/// accepts; each connection is served by a task that asks the node and writes the answer.
final class ControlServer: Sendable {
    let path: String
    let listener: FileDescriptor
    let node: ClusterNode
    let logger: Logger
    let stopped = Locked(false)

    init(path: String, node: ClusterNode, logger: Logger) throws {
        self.path = path
        self.node = node
        self.logger = logger
        unlink(path)
        listener = try UnixSocket.listen(path: path)
        try UnixSocket.setPermissions(path: path, mode: 0o600, owner: 0, group: 0)
    }

    func start() {
        let thread = Thread { [self] in
            while !stopped.withLock({ $0 }) {
                let client: Int32
                do {
                    client = try Syscall.call { accept(listener.rawValue, nil, nil) }
                } catch {
                    if stopped.withLock({ $0 }) { return }
                    usleep(100_000)
                    continue
                }
                Thread.detachNewThread { [self] in serve(client) }
            }
        }
        thread.name = "vmha-control"
        thread.start()
    }

    func stop() {
        stopped.withLock { $0 = true }
        shutdown(listener.rawValue, Int32(SHUT_RDWR))
        try? listener.close()
        unlink(path)
    }

    private func serve(_ fd: Int32) {
        defer { close(fd) }
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while line.count < 65536 {
            let n = (try? Syscall.call { read(fd, &byte, 1) }) ?? 0
            if n <= 0 || byte == UInt8(ascii: "\n") { break }
            line.append(byte)
        }
        let response: ControlResponse
        if let request = try? JSONDecoder().decode(ControlRequest.self, from: Data(line)) {
            let box = Locked<ControlResponse?>(nil)
            let done = DispatchSemaphore(value: 0)
            Task {
                let answer = await node.handle(request)
                box.withLock { $0 = answer }
                done.signal()
            }
            done.wait()
            response = box.withLock { $0 }!
        } else {
            response = ControlResponse(ok: false, error: "malformed request")
        }
        var bytes = Array((try? JSONEncoder().encode(response)) ?? Data("{\"ok\":false}".utf8))
        bytes.append(UInt8(ascii: "\n"))
        var offset = 0
        while offset < bytes.count {
            let n = (try? Syscall.call { bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } }) ?? -1
            if n <= 0 { return }
            offset += n
        }
    }
}
