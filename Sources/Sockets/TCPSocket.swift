import SystemCalls
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// IPv4 TCP sockets for the peer link: creation, options, binding. The I/O goes through a ring.
public enum TCPSocket {
    /// An IPv4 address and port, parsed from `"a.b.c.d:port"`.
    public struct Address: Sendable, Hashable, CustomStringConvertible {
        public var host: String
        public var port: UInt16

        public init?(_ text: String) {
            guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]) else { return nil }
            let host = String(text[..<colon])
            var probe = in_addr()
            guard inet_pton(AF_INET, host, &probe) == 1 else { return nil }
            self.host = host
            self.port = port
        }

        public var description: String { "\(host):\(port)" }

        func sockaddr() -> sockaddr_in {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = port.bigEndian
            _ = inet_pton(AF_INET, host, &address.sin_addr)
            return address
        }

        /// Calls `body` with the `sockaddr_in` bytes (for `IOUring.connect`).
        public func withSocketAddress<T>(_ body: (UnsafeRawBufferPointer) async throws -> T) async rethrows -> T {
            let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: MemoryLayout<sockaddr_in>.size, alignment: 8)
            defer { copy.deallocate() }
            withUnsafeBytes(of: sockaddr()) { copy.copyMemory(from: $0) }
            return try await body(UnsafeRawBufferPointer(copy))
        }
    }

    /// A close-on-exec TCP socket with `TCP_NODELAY` (acks and small frames must not wait for Nagle).
    public static func socket() throws(SystemCallError) -> FileDescriptor {
        let fd = FileDescriptor(rawValue: try Syscall.call("socket") { Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0) })
        do {
            try setOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
        } catch {
            try? fd.close()
            throw error
        }
        return fd
    }

    /// A listening socket on `address` (`SO_REUSEADDR`, so a restarted daemon can bind at once).
    public static func listen(_ address: Address, backlog: Int32 = 64) throws(SystemCallError) -> FileDescriptor {
        let fd = try socket()
        do {
            try setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1)
            var raw = address.sockaddr()
            try withUnsafePointer(to: &raw) { (pointer) throws(SystemCallError) in
                try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { (sa) throws(SystemCallError) in
                    _ = try Syscall.call("bind") { bind(fd.rawValue, sa, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                }
            }
            try Syscall.call("listen") { Glibc.listen(fd.rawValue, backlog) }
            return fd
        } catch {
            try? fd.close()
            throw error
        }
    }

    /// Socket buffer sizes: large buffers keep a 10 Gb/s link busy during resync.
    public static func setBufferSizes(_ fd: FileDescriptor, bytes: Int32) {
        try? setOption(fd, SOL_SOCKET, SO_SNDBUF, bytes)
        try? setOption(fd, SOL_SOCKET, SO_RCVBUF, bytes)
    }

    static func setOption(_ fd: FileDescriptor, _ level: Int32, _ name: Int32, _ value: Int32) throws(SystemCallError) {
        var value = value
        try Syscall.call("setsockopt") { setsockopt(fd.rawValue, level, name, &value, socklen_t(MemoryLayout<Int32>.size)) }
    }

    /// The peer's address of a connected socket.
    public static func peerAddress(_ fd: FileDescriptor) -> String {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                (try? Syscall.call("getpeername") { getpeername(fd.rawValue, raw, &length) }) != nil
            }
        }
        guard ok else { return "?" }
        return text(of: address)
    }

    /// `"a.b.c.d:port"` of a kernel-filled `sockaddr_in`.
    static func text(of address: sockaddr_in) -> String {
        var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
        var addr = address.sin_addr
        inet_ntop(AF_INET, &addr, &text, socklen_t(INET_ADDRSTRLEN))
        let host = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return "\(host):\(UInt16(bigEndian: address.sin_port))"
    }
}
