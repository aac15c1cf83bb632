import Foundation
import SystemCalls

#if canImport(Glibc)
import Glibc
#endif

/// Forwards 127.0.0.1:PORT of this (the root) network namespace to an address inside a simulated
/// host's namespace, so a browser on the machine reaches a console that listens in there
/// (`vmha demo --console`). Each outgoing socket is created with the forwarding thread switched
/// into the namespace (setns affects that thread only) and back: a socket stays in the namespace
/// it was made in. Blocking I/O on its own threads; for a demo's few connections.
public final class NamespaceForwarder: @unchecked Sendable {
    public let port: Int
    let namespace: String
    let target: (host: String, port: Int)
    let listener: Int32

    public init(port: Int, namespace: String, targetHost: String, targetPort: Int) throws {
        self.port = port
        self.namespace = namespace
        self.target = (targetHost, targetPort)
        let fd = try Syscall.call("socket") { socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0) }
        var one: Int32 = 1
        _ = try? Syscall.call("setsockopt") { setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size)) }
        var address = Self.address("127.0.0.1", port)
        try withUnsafePointer(to: &address) { (pointer) throws(SystemCallError) in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { (sa) throws(SystemCallError) in
                _ = try Syscall.call("bind") { bind(fd, sa, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        }
        try Syscall.call("listen") { listen(fd, 16) }
        listener = fd
        Thread.detachNewThread { self.acceptLoop() }
    }

    /// Stops accepting (open connections end with their peers).
    public func stop() {
        _ = try? Syscall.call("shutdown") { shutdown(listener, Int32(SHUT_RDWR)) }
    }

    static func address(_ host: String, _ port: Int) -> sockaddr_in {
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, host, &a.sin_addr)
        return a
    }

    private func acceptLoop() {
        defer { _ = try? Syscall.call("close") { close(listener) } }
        while let client = try? Syscall.call("accept", { accept(listener, nil, nil) }) {
            guard let upstream = try? connectInNamespace() else {
                _ = try? Syscall.call("close") { close(client) }
                continue
            }
            // Both descriptors are closed by whichever direction ends last.
            let directions = Directions()
            let done: @Sendable () -> Void = { if directions.finished() { _ = try? Syscall.call("close") { close(client) }; _ = try? Syscall.call("close") { close(upstream) } } }
            Thread.detachNewThread { Self.copy(from: client, to: upstream); done() }
            Thread.detachNewThread { Self.copy(from: upstream, to: client); done() }
        }
    }

    /// glibc's setns(2), which its Swift module does not export (a GNU extension); CLONE_NEWNET.
    private static let setns = unsafeBitCast(dlsym(dlopen(nil, RTLD_NOW), "setns"), to: (@convention(c) (Int32, Int32) -> Int32).self)
    private static let newNetworkNamespace: Int32 = 0x4000_0000

    /// A TCP socket made inside `namespace` (this thread enters it and returns), connected to the target.
    private func connectInNamespace() throws -> Int32 {
        let original = try Syscall.call("open") { open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC) }
        defer { _ = try? Syscall.call("close") { close(original) } }
        let inside = try Syscall.call("open") { open("/run/netns/\(namespace)", O_RDONLY | O_CLOEXEC) }
        defer { _ = try? Syscall.call("close") { close(inside) } }
        try Syscall.call("setns") { Self.setns(inside, Self.newNetworkNamespace) }
        let fd = try? Syscall.call("socket") { socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0) }
        try Syscall.call("setns") { Self.setns(original, Self.newNetworkNamespace) }
        guard let fd else { throw SystemCallError("socket", .addressFamilyNotSupported) }
        var address = Self.address(target.host, target.port)
        do {
            try withUnsafePointer(to: &address) { (pointer) throws(SystemCallError) in
                try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { (sa) throws(SystemCallError) in
                    _ = try Syscall.call("connect", retryOnInterrupt: false) { connect(fd, sa, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                }
            }
        } catch {
            _ = try? Syscall.call("close") { close(fd) }
            throw error
        }
        return fd
    }

    /// Copies until either side ends; then both directions are shut.
    private static func copy(from source: Int32, to destination: Int32) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        outer: while true {
            let n = (try? buffer.withUnsafeMutableBytes { (b) throws(SystemCallError) in try Syscall.call("read") { read(source, b.baseAddress, b.count) } }) ?? 0
            guard n > 0 else { break }
            var offset = 0
            while offset < n {
                let written = (try? buffer.withUnsafeBytes { (b) throws(SystemCallError) in
                    try Syscall.call("write") { write(destination, b.baseAddress! + offset, n - offset) }
                }) ?? 0
                guard written > 0 else { break outer }
                offset += written
            }
        }
        _ = try? Syscall.call("shutdown") { shutdown(destination, Int32(SHUT_WR)) }
        _ = try? Syscall.call("shutdown") { shutdown(source, Int32(SHUT_RD)) }
    }
}

/// Counts the two directions of a forwarded connection down.
private final class Directions: @unchecked Sendable {
    private let lock = NSLock()
    private var open = 2
    /// True for the second caller.
    func finished() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        open -= 1
        return open == 0
    }
}
