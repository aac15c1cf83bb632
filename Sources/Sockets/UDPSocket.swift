import SystemCalls
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Small IPv4 UDP datagram sockets for heartbeats, witness requests and peer commands. vmhad
/// receives on its ring (`IOUring.recv`); `receive` (blocking, with a timeout) serves the witness
/// command's simple loop. Every call goes through `Syscall.call`.
public struct UDPSocket: Sendable {
    public let descriptor: FileDescriptor

    /// A socket bound to `address` (`0.0.0.0:0` for an ephemeral client socket), whose receives
    /// time out after `receiveTimeoutMilliseconds` (so a reader thread can notice it should stop).
    public init(bind address: TCPSocket.Address, receiveTimeoutMilliseconds: Int = 100) throws(SystemCallError) {
        let fd = FileDescriptor(rawValue: try Syscall.call("socket") { Glibc.socket(AF_INET, Int32(SOCK_DGRAM.rawValue | SOCK_CLOEXEC.rawValue), 0) })
        do {
            var one: Int32 = 1
            try Syscall.call("setsockopt") { setsockopt(fd.rawValue, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size)) }
            var timeout = timeval(tv_sec: receiveTimeoutMilliseconds / 1000, tv_usec: (receiveTimeoutMilliseconds % 1000) * 1000)
            try Syscall.call("setsockopt") { setsockopt(fd.rawValue, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size)) }
            var raw = address.sockaddr()
            try Syscall.call("bind") {
                withUnsafePointer(to: &raw) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd.rawValue, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                }
            }
        } catch {
            try? fd.close()
            throw error
        }
        descriptor = fd
    }

    /// Sends one datagram; errors (unreachable network, link down) are returned, not fatal.
    @discardableResult
    public func send(_ bytes: [UInt8], to address: TCPSocket.Address) -> SystemCallError? {
        var raw = address.sockaddr()
        do {
            try Syscall.call("sendto") {
                bytes.withUnsafeBytes { buffer in
                    withUnsafePointer(to: &raw) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            Glibc.sendto(descriptor.rawValue, buffer.baseAddress, buffer.count, Int32(MSG_NOSIGNAL), $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                        }
                    }
                }
            }
            return nil
        } catch {
            return error
        }
    }

    /// Receives one datagram, or nil after the receive timeout. The sender's address comes along.
    public func receive(maximumLength: Int = 2048) throws(SystemCallError) -> (bytes: [UInt8], from: TCPSocket.Address)? {
        var buffer = [UInt8](repeating: 0, count: maximumLength)
        var from = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let count: Int
        do {
            count = try Syscall.call("recvfrom") {
                buffer.withUnsafeMutableBytes { raw in
                    withUnsafeMutablePointer(to: &from) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.recvfrom(descriptor.rawValue, raw.baseAddress, raw.count, 0, $0, &length) }
                    }
                }
            }
        } catch let error where error.errno == .wouldBlock || error.errno == .resourceTemporarilyUnavailable {
            return nil
        }
        let address = TCPSocket.Address(TCPSocket.text(of: from))!
        return (Array(buffer[0..<count]), address)
    }

    public func close() { try? descriptor.close() }
}
