import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A system call that failed: the call's name and the errno it set. The name comes along (as in
/// swift-nio's `IOError`) so a message says what was attempted, not only `Bad file descriptor`.
public struct SystemCallError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The C function called, e.g. `"connect"`.
    public var call: String
    public var errno: Errno

    public init(_ call: String, _ errno: Errno) { (self.call, self.errno) = (call, errno) }

    public var description: String { "\(call): \(errno)" }
}

/// The one place where a raw system call's result becomes a typed error.
///
/// Every call into the C library that reports failure as `-1` + `errno` goes through here,
/// so `EINTR` is retried in one place and callers see the call's name and its `Errno`, never a
/// bare integer.
public enum Syscall {
    /// Runs `body`, the call `name`, retrying on `EINTR`, and throws the errno of a `-1` result.
    /// `close` passes `retryOnInterrupt: false`: Linux frees the descriptor even when interrupted.
    @inlinable
    @discardableResult
    public static func call<T: FixedWidthInteger>(
        _ name: StaticString, retryOnInterrupt: Bool = true, _ body: () -> T
    ) throws(SystemCallError) -> T {
        while true {
            let result = body()
            if result != -1 { return result }
            let error = Errno(rawValue: errno)
            if retryOnInterrupt && error == .interrupted { continue }
            throw SystemCallError("\(name)", error)
        }
    }

    /// Runs `body`, the call `name`, which returns an error number instead of setting `errno`
    /// (`posix_fadvise`, `posix_spawnp`), and throws it.
    @inlinable
    public static func callReturningErrorNumber(_ name: StaticString, _ body: () -> Int32) throws(SystemCallError) {
        let result = body()
        if result != 0 { throw SystemCallError("\(name)", Errno(rawValue: result)) }
    }
}

extension FileDescriptor.OpenOptions {
    /// `O_DIRECT`, which Glibc only exports under `_GNU_SOURCE`.
    public static var direct: FileDescriptor.OpenOptions {
        #if arch(x86_64) || arch(i386)
        FileDescriptor.OpenOptions(rawValue: 0o40000)
        #elseif arch(arm64) || arch(arm)
        FileDescriptor.OpenOptions(rawValue: 0o200000)
        #else
        #error("O_DIRECT value unknown for this architecture")
        #endif
    }
}
