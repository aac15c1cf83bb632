import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The one place where a raw system call's result becomes a typed error.
///
/// Every call into the C library that reports failure as `-1` + `errno` goes through here,
/// so `EINTR` is retried in one place and callers see `Errno`, never a bare integer.
public enum Syscall {
    /// Runs `body`, retrying on `EINTR`, and throws the `Errno` of a `-1` result.
    @inlinable
    @discardableResult
    public static func call<T: FixedWidthInteger>(
        retryOnInterrupt: Bool = true, _ body: () -> T
    ) throws(Errno) -> T {
        while true {
            let result = body()
            if result != -1 { return result }
            let error = Errno(rawValue: errno)
            if retryOnInterrupt && error == .interrupted { continue }
            throw error
        }
    }

    /// Runs `body`, a call that returns an error number instead of setting `errno`
    /// (`posix_fadvise`, `posix_fallocate`), and throws it.
    @inlinable
    public static func callReturningErrorNumber(_ body: () -> Int32) throws(Errno) {
        let result = body()
        if result != 0 { throw Errno(rawValue: result) }
    }

    /// Maps an io_uring completion (`res`: a count, or `-errno`) to a typed result.
    @inlinable
    public static func completion(_ res: Int32) throws(Errno) -> Int {
        if res < 0 { throw Errno(rawValue: -res) }
        return Int(res)
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
