import Foundation
import Sockets
import SystemCalls
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The test's way into a running test guest: the `vmha.control` virtio-serial port
/// (``GuestDomain/channels``), a UNIX socket QEMU listens on in the host's libvirt channel
/// directory. One command a line; the guest answers `ok <command>` once it has applied it,
/// `failed <command>` or `unknown <command>` (``GuestInit``). Commands: `agent off` (its guest
/// agent stops answering, like a hung one), `agent on`, and for a guest with a network
/// (``GuestDomain/address``) `service off` (its TCP service on port 80 stops listening),
/// `service on`.
public enum GuestControl {
    public static let portName = "vmha.control"

    /// The control socket's path in a running domain's live XML (libvirt fills it in at the
    /// start); nil for a domain without the port.
    public static func socketPath(inLiveXML xml: String) -> String? {
        for channel in xml.components(separatedBy: "<channel ").dropFirst() {
            let element = channel.components(separatedBy: "</channel>")[0]
            guard element.contains("name='\(portName)'"), let start = element.range(of: "path='") else { continue }
            let rest = element[start.upperBound...]
            return rest.firstIndex(of: "'").map { String(rest[..<$0]) }
        }
        return nil
    }

    /// Sends `command` and returns the guest's answer to it. Blocking (call it off Swift's pool);
    /// lines answering an earlier command whose sender gave up are skipped.
    public static func send(_ command: String, socket path: String, timeout: Duration) throws -> String {
        let fd = try UnixSocket.socket()
        defer { try? fd.close() }
        _ = try UnixSocket.withAddress(path) { (address) throws(SystemCallError) in
            try Syscall.call("connect") {
                connect(fd.rawValue, address.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(address.count))
            }
        }
        // A guest that never answers ends each read here, and the loop at the deadline.
        var wait = timeval(tv_sec: 0, tv_usec: 200_000)
        try Syscall.call("setsockopt") { setsockopt(fd.rawValue, SOL_SOCKET, SO_RCVTIMEO, &wait, socklen_t(MemoryLayout<timeval>.size)) }
        _ = try fd.writeAll(Array("\(command)\n".utf8))
        let deadline = ContinuousClock.now + timeout
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while ContinuousClock.now < deadline {
            let count = read(fd.rawValue, &byte, 1)
            if count < 0 {
                if [EAGAIN, EINTR].contains(errno) { continue }
                throw SystemCallError("read", Errno(rawValue: errno))
            }
            guard count == 1 else { throw HAClusterError("the guest's \(portName) port closed before answering '\(command)'") }
            guard byte == UInt8(ascii: "\n") else {
                line.append(byte)
                continue
            }
            let answer = String(decoding: line, as: UTF8.self)
            line = []
            if ["ok", "failed", "unknown"].contains(where: { answer == "\($0) \(command)" }) { return answer }
        }
        throw HAClusterError("no answer to '\(command)' on \(path) within \(timeout)")
    }
}
