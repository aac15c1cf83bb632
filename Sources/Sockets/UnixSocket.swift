import SystemCalls
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// `AF_UNIX` stream sockets: creation, binding and addresses (the I/O itself goes through a ring).
public enum UnixSocket {
    /// A close-on-exec `AF_UNIX` stream socket.
    public static func socket() throws(SystemCallError) -> FileDescriptor {
        FileDescriptor(rawValue: try Syscall.call("socket") { Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0) })
    }

    /// Binds a listening socket at `path`, replacing a stale socket file left by a previous run.
    public static func listen(path: String, backlog: Int32 = 64) throws(SystemCallError) -> FileDescriptor {
        let fd = try socket()
        do {
            var st = stat()
            if (try? Syscall.call("lstat") { lstat(path, &st) }) != nil && (st.st_mode & S_IFMT) == S_IFSOCK {
                _ = try? Syscall.call("unlink") { unlink(path) }  // bind reports what is still in the way
            }
            _ = try withAddress(path) { (address) throws(SystemCallError) in
                try Syscall.call("bind") {
                    bind(fd.rawValue, address.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(address.count))
                }
            }
            try Syscall.call("listen") { Glibc.listen(fd.rawValue, backlog) }
            return fd
        } catch {
            try? fd.close()
            throw error
        }
    }

    /// Sets the socket file's mode and, when given, its owner and group (who may connect).
    public static func setPermissions(path: String, mode: mode_t, owner: uid_t? = nil, group: gid_t? = nil) throws(SystemCallError) {
        try Syscall.call("chmod") { chmod(path, mode) }
        if owner != nil || group != nil {
            try Syscall.call("chown") { chown(path, owner ?? uid_t.max, group ?? gid_t.max) }
        }
    }

    /// Calls `body` with a `sockaddr_un` for `path`. Paths longer than `sun_path` are `ENAMETOOLONG`.
    public static func withAddress<T, E: Error>(
        _ path: String, _ body: (UnsafeRawBufferPointer) async throws(E) -> T
    ) async throws -> T {
        let address = try makeAddress(path)
        return try await withUnsafeBytes(of: address) { bytes in
            // The address is copied by the kernel at submission, but the caller awaits completion anyway.
            let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 8)
            copy.copyMemory(from: bytes)
            return copy
        }.withDeallocation { copy in try await body(UnsafeRawBufferPointer(copy)) }
    }

    /// Synchronous variant of ``withAddress(_:_:)-(String,(UnsafeRawBufferPointer)async throws(E)->T)``.
    public static func withAddress<T>(
        _ path: String, _ body: (UnsafeRawBufferPointer) throws(SystemCallError) -> T
    ) throws(SystemCallError) -> T {
        let address = try makeAddress(path)
        return try withUnsafeBytes(of: address) { (bytes) throws(SystemCallError) -> T in try body(bytes) }
    }

    static func makeAddress(_ path: String) throws(SystemCallError) -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        // The kernel would silently truncate the path; refused before any call sees it.
        guard bytes.count < capacity else { throw SystemCallError("sockaddr_un", .fileNameTooLong) }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return address
    }
}

extension UnsafeMutableRawBufferPointer {
    fileprivate func withDeallocation<T>(_ body: (UnsafeMutableRawBufferPointer) async throws -> T) async rethrows -> T {
        defer { deallocate() }
        return try await body(self)
    }
}
