import SystemCalls
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A network interface's flags (`IFF_UP`, `IFF_RUNNING`, …) as the kernel reports them for the
/// caller's network namespace (`SIOCGIFFLAGS` on a throwaway datagram socket).
public enum InterfaceFlags {
    public static func read(_ name: String) throws(SystemCallError) -> Int32 {
        let fd = try Syscall.call("socket") { Glibc.socket(AF_INET, Int32(SOCK_DGRAM.rawValue | SOCK_CLOEXEC.rawValue), 0) }
        defer { _ = Glibc.close(fd) }
        var request = ifreq()
        let bytes = Array(name.utf8.prefix(Int(IFNAMSIZ) - 1))
        withUnsafeMutableBytes(of: &request.ifr_ifrn.ifrn_name) { raw in
            for (index, byte) in bytes.enumerated() { raw[index] = byte }
        }
        _ = try Syscall.call("ioctl(SIOCGIFFLAGS)") { ioctl(fd, UInt(SIOCGIFFLAGS), &request) }
        return Int32(request.ifr_ifru.ifru_flags)
    }
}
