import CUring
import SystemCalls
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

extension IOUring {
    /// The largest length one read/write SQE carries (the kernel caps rw at `MAX_RW_COUNT`).
    public static let maxTransfer = 0x7fff_f000

    /// `IORING_OP_NOP`: a round trip through the ring, for tests and benchmarks.
    nonisolated(nonsending) public func nop() async throws(Errno) {
        _ = try Syscall.completion(await perform(.nop))
    }

    /// `IORING_OP_READ` at `offset`. Returns the byte count (short at end of file).
    nonisolated(nonsending) public func read(
        _ handle: IOHandle, into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64
    ) async throws(Errno) -> Int {
        try Syscall.completion(await perform(.read(handle, buffer.baseAddress!, UInt32(buffer.count), offset)))
    }

    /// `IORING_OP_WRITE` at `offset`; `durable` sets `RWF_DSYNC` (NBD FUA).
    nonisolated(nonsending) public func write(
        _ handle: IOHandle, from buffer: UnsafeRawBufferPointer, at offset: UInt64, durable: Bool = false
    ) async throws(Errno) -> Int {
        try Syscall.completion(
            await perform(
                .write(handle, buffer.baseAddress!, UInt32(buffer.count), offset, rwFlags: durable ? vmha_RWF_DSYNC : 0)
            ))
    }

    /// Reads until `buffer` is full or end of file; returns the bytes read.
    nonisolated(nonsending) public func readFully(
        _ handle: IOHandle, into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64
    ) async throws(Errno) -> Int {
        var done = 0
        while done < buffer.count {
            let n = try await read(handle, into: UnsafeMutableRawBufferPointer(rebasing: buffer[done...]), at: offset + UInt64(done))
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// Writes all of `buffer`, continuing after short writes.
    nonisolated(nonsending) public func writeFully(
        _ handle: IOHandle, from buffer: UnsafeRawBufferPointer, at offset: UInt64, durable: Bool = false
    ) async throws(Errno) {
        var done = 0
        while done < buffer.count {
            let n = try await write(
                handle, from: UnsafeRawBufferPointer(rebasing: buffer[done...]), at: offset + UInt64(done), durable: durable)
            if n == 0 { throw .noSpace }
            done += n
        }
    }

    /// `IORING_OP_READ_FIXED` from buffer `index` of ``registerBuffers(_:)``; `buffer` must lie inside it.
    nonisolated(nonsending) public func readFixed(
        _ handle: IOHandle, into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, bufferIndex: Int
    ) async throws(Errno) -> Int {
        try Syscall.completion(
            await perform(.readFixed(handle, buffer.baseAddress!, UInt32(buffer.count), offset, bufferIndex: Int32(bufferIndex))))
    }

    /// `IORING_OP_WRITE_FIXED` from buffer `index` of ``registerBuffers(_:)``.
    nonisolated(nonsending) public func writeFixed(
        _ handle: IOHandle, from buffer: UnsafeRawBufferPointer, at offset: UInt64, bufferIndex: Int
    ) async throws(Errno) -> Int {
        try Syscall.completion(
            await perform(.writeFixed(handle, buffer.baseAddress!, UInt32(buffer.count), offset, bufferIndex: Int32(bufferIndex))))
    }

    /// `IORING_OP_READV` into several buffers.
    nonisolated(nonsending) public func readv(
        _ handle: IOHandle, into buffers: [UnsafeMutableRawBufferPointer], at offset: UInt64
    ) async throws(Errno) -> Int {
        let vector = UnsafeMutableBufferPointer<iovec>.allocate(capacity: buffers.count)
        defer { vector.deallocate() }
        for (index, buffer) in buffers.enumerated() {
            vector[index] = iovec(iov_base: buffer.baseAddress, iov_len: buffer.count)
        }
        return try Syscall.completion(await perform(.readv(handle, vector.baseAddress!, UInt32(vector.count), offset)))
    }

    /// `IORING_OP_WRITEV` from several buffers; `durable` sets `RWF_DSYNC`.
    nonisolated(nonsending) public func writev(
        _ handle: IOHandle, from buffers: [UnsafeRawBufferPointer], at offset: UInt64, durable: Bool = false
    ) async throws(Errno) -> Int {
        let vector = UnsafeMutableBufferPointer<iovec>.allocate(capacity: buffers.count)
        defer { vector.deallocate() }
        for (index, buffer) in buffers.enumerated() {
            vector[index] = iovec(iov_base: UnsafeMutableRawPointer(mutating: buffer.baseAddress), iov_len: buffer.count)
        }
        return try Syscall.completion(
            await perform(
                .writev(handle, vector.baseAddress!, UInt32(vector.count), offset, rwFlags: durable ? vmha_RWF_DSYNC : 0)))
    }

    /// `IORING_OP_FSYNC`; `dataOnly` is fdatasync (NBD FLUSH).
    nonisolated(nonsending) public func fsync(_ handle: IOHandle, dataOnly: Bool = true) async throws(Errno) {
        _ = try Syscall.completion(await perform(.fsync(handle, dataOnly: dataOnly)))
    }

    /// Deallocates a range (NBD TRIM): `FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE`.
    nonisolated(nonsending) public func punchHole(_ handle: IOHandle, offset: UInt64, length: UInt64) async throws(Errno) {
        _ = try Syscall.completion(
            await perform(.fallocate(handle, mode: FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset: offset, length: length)))
    }

    /// Zeroes a range keeping it allocated (NBD WRITE_ZEROES with NO_HOLE): `FALLOC_FL_ZERO_RANGE`.
    nonisolated(nonsending) public func zeroRange(_ handle: IOHandle, offset: UInt64, length: UInt64) async throws(Errno) {
        _ = try Syscall.completion(
            await perform(.fallocate(handle, mode: FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, offset: offset, length: length)))
    }

    /// `IORING_OP_FALLOCATE` with explicit mode bits.
    nonisolated(nonsending) public func fallocate(_ handle: IOHandle, mode: Int32, offset: UInt64, length: UInt64) async throws(Errno) {
        _ = try Syscall.completion(await perform(.fallocate(handle, mode: mode, offset: offset, length: length)))
    }

    /// `IORING_OP_SEND`. Returns the bytes sent (may be short).
    nonisolated(nonsending) public func send(_ handle: IOHandle, _ buffer: UnsafeRawBufferPointer, flags: Int32 = 0) async throws(Errno) -> Int {
        try Syscall.completion(await performCancellable(.send(handle, buffer.baseAddress!, buffer.count, flags: flags)))
    }

    /// Sends all of `buffer` (`MSG_NOSIGNAL`: a closed peer is an `EPIPE` error, not a signal).
    nonisolated(nonsending) public func sendAll(_ handle: IOHandle, _ buffer: UnsafeRawBufferPointer) async throws(Errno) {
        var done = 0
        while done < buffer.count {
            done += try await send(handle, UnsafeRawBufferPointer(rebasing: buffer[done...]), flags: Int32(MSG_NOSIGNAL))
        }
    }

    /// Sends all of `bytes` (for small control messages; data paths pass their own buffers).
    nonisolated(nonsending) public func sendAll(_ handle: IOHandle, bytes: [UInt8]) async throws(Errno) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 16)
        defer { buffer.deallocate() }
        buffer.copyBytes(from: bytes)
        try await sendAll(handle, UnsafeRawBufferPointer(buffer))
    }

    /// `IORING_OP_RECV`. Returns 0 at end of stream.
    nonisolated(nonsending) public func recv(_ handle: IOHandle, into buffer: UnsafeMutableRawBufferPointer, flags: Int32 = 0) async throws(Errno) -> Int {
        try Syscall.completion(await performCancellable(.recv(handle, buffer.baseAddress!, buffer.count, flags: flags)))
    }

    /// `IORING_OP_ACCEPT` (the new socket is close-on-exec).
    nonisolated(nonsending) public func accept(_ handle: IOHandle) async throws(Errno) -> FileDescriptor {
        FileDescriptor(rawValue: Int32(try Syscall.completion(await performCancellable(.accept(handle, flags: Int32(SOCK_CLOEXEC.rawValue))))))
    }

    /// `IORING_OP_CONNECT` to a socket address held in `address`.
    nonisolated(nonsending) public func connect(_ handle: IOHandle, to address: UnsafeRawBufferPointer) async throws(Errno) {
        _ = try Syscall.completion(
            await performCancellable(
                .connect(handle, address.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(address.count))))
    }

    /// `IORING_OP_TIMEOUT`: sleeps on the ring (cancellable like any request).
    nonisolated(nonsending) public func sleep(nanoseconds: UInt64) async throws(Errno) {
        let spec = UnsafeMutablePointer<__kernel_timespec>.allocate(capacity: 1)
        defer { spec.deallocate() }
        spec.pointee = __kernel_timespec(tv_sec: Int64(nanoseconds / 1_000_000_000), tv_nsec: Int64(nanoseconds % 1_000_000_000))
        let result = await performCancellable(.timeout(spec))
        if result == -ETIME { return }
        _ = try Syscall.completion(result)
    }

    /// ``sleep(nanoseconds:)`` for a `Duration`.
    nonisolated(nonsending) public func sleep(for duration: Duration) async throws(Errno) {
        let (seconds, attoseconds) = duration.components
        try await sleep(nanoseconds: UInt64(max(0, seconds)) * 1_000_000_000 + UInt64(max(0, attoseconds) / 1_000_000_000))
    }

    /// Registers `buffers` for ``readFixed(_:into:at:bufferIndex:)`` / ``writeFixed(_:from:at:bufferIndex:)``.
    /// The memory must stay valid until ``unregisterBuffers()`` or shutdown.
    nonisolated(nonsending) public func registerBuffers(_ buffers: [UnsafeMutableRawBufferPointer]) async throws(Errno) {
        let iovecs = buffers.map { iovec(iov_base: $0.baseAddress, iov_len: $0.count) }
        let box = SendableIovecs(iovecs)
        _ = try Syscall.completion(
            await perform(.onOwner { ring in
                box.vectors.withUnsafeBufferPointer { io_uring_register_buffers(ring, $0.baseAddress, UInt32($0.count)) }
            }))
    }

    nonisolated(nonsending) public func unregisterBuffers() async throws(Errno) {
        _ = try Syscall.completion(await perform(.onOwner { io_uring_unregister_buffers($0) }))
    }

    /// Registers descriptors; ``IOHandle/registered(_:)`` addresses them by index.
    nonisolated(nonsending) public func registerFiles(_ files: [FileDescriptor]) async throws(Errno) {
        let raw = files.map(\.rawValue)
        _ = try Syscall.completion(
            await perform(.onOwner { ring in raw.withUnsafeBufferPointer { io_uring_register_files(ring, $0.baseAddress, UInt32($0.count)) } }))
    }

    nonisolated(nonsending) public func unregisterFiles() async throws(Errno) {
        _ = try Syscall.completion(await perform(.onOwner { io_uring_unregister_files($0) }))
    }
}

/// iovecs built by the caller and only read on the owner thread while the caller waits.
private final class SendableIovecs: @unchecked Sendable {
    let vectors: [iovec]
    init(_ vectors: [iovec]) { self.vectors = vectors }
}

extension Syscall {
    /// Maps an io_uring completion (`res`: a count, or `-errno`) to a typed result. The error
    /// stays a bare `Errno`: the operation's method names the call, and the data path matches
    /// errors by errno (`.canceled`, NBD error codes).
    static func completion(_ res: Int32) throws(Errno) -> Int {
        if res < 0 { throw Errno(rawValue: -res) }
        return Int(res)
    }
}
