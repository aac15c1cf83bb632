import CUring

#if canImport(Glibc)
import Glibc
#endif

/// One request as the owner thread turns it into an SQE.
///
/// Holds raw pointers borrowed from a caller that stays suspended until the request's CQE
/// has arrived, so the memory outlives the kernel's use of it; hence `@unchecked Sendable`.
@usableFromInline
enum IOUringOperation: @unchecked Sendable {
    case nop
    case read(IOHandle, UnsafeMutableRawPointer, UInt32, UInt64)
    case write(IOHandle, UnsafeRawPointer, UInt32, UInt64, rwFlags: Int32)
    case readFixed(IOHandle, UnsafeMutableRawPointer, UInt32, UInt64, bufferIndex: Int32)
    case writeFixed(IOHandle, UnsafeRawPointer, UInt32, UInt64, bufferIndex: Int32)
    case readv(IOHandle, UnsafePointer<iovec>, UInt32, UInt64)
    case writev(IOHandle, UnsafePointer<iovec>, UInt32, UInt64, rwFlags: Int32)
    case fsync(IOHandle, dataOnly: Bool)
    case fallocate(IOHandle, mode: Int32, offset: UInt64, length: UInt64)
    case send(IOHandle, UnsafeRawPointer, Int, flags: Int32)
    case recv(IOHandle, UnsafeMutableRawPointer, Int, flags: Int32)
    case accept(IOHandle, flags: Int32)
    case connect(IOHandle, UnsafePointer<sockaddr>, socklen_t)
    case timeout(UnsafeMutablePointer<__kernel_timespec>)
    case cancel(target: UInt64)
    /// Runs on the owner thread (registration calls must come from the ring's single issuer).
    case onOwner(@Sendable (UnsafeMutablePointer<io_uring>) -> Int32)

    /// Fills `sqe` (never called for `.onOwner`, which has no SQE).
    func prepare(_ sqe: UnsafeMutablePointer<io_uring_sqe>) {
        // After the prep call: io_uring_prep_* resets sqe->flags.
        func markRegistered(_ handle: IOHandle) {
            if handle.isRegistered { sqe.pointee.flags |= vmha_IOSQE_FIXED_FILE }
        }
        switch self {
        case .nop:
            io_uring_prep_nop(sqe)
        case .read(let h, let buffer, let length, let offset):
            io_uring_prep_read(sqe, h.raw, buffer, length, offset)
            markRegistered(h)
        case .write(let h, let buffer, let length, let offset, let rwFlags):
            io_uring_prep_write(sqe, h.raw, buffer, length, offset)
            sqe.pointee.rw_flags = UInt32(bitPattern: rwFlags)
            markRegistered(h)
        case .readFixed(let h, let buffer, let length, let offset, let index):
            io_uring_prep_read_fixed(sqe, h.raw, buffer, length, offset, index)
            markRegistered(h)
        case .writeFixed(let h, let buffer, let length, let offset, let index):
            io_uring_prep_write_fixed(sqe, h.raw, buffer, length, offset, index)
            markRegistered(h)
        case .readv(let h, let iovecs, let count, let offset):
            io_uring_prep_readv(sqe, h.raw, iovecs, count, offset)
            markRegistered(h)
        case .writev(let h, let iovecs, let count, let offset, let rwFlags):
            io_uring_prep_writev2(sqe, h.raw, iovecs, count, offset, rwFlags)
            markRegistered(h)
        case .fsync(let h, let dataOnly):
            io_uring_prep_fsync(sqe, h.raw, dataOnly ? UInt32(IORING_FSYNC_DATASYNC) : 0)
            markRegistered(h)
        case .fallocate(let h, let mode, let offset, let length):
            io_uring_prep_fallocate(sqe, h.raw, mode, off_t(offset), off_t(length))
            markRegistered(h)
        case .send(let h, let buffer, let length, let flags):
            io_uring_prep_send(sqe, h.raw, buffer, length, flags)
            markRegistered(h)
        case .recv(let h, let buffer, let length, let flags):
            io_uring_prep_recv(sqe, h.raw, buffer, length, flags)
            markRegistered(h)
        case .accept(let h, let flags):
            io_uring_prep_accept(sqe, h.raw, nil, nil, flags)
            markRegistered(h)
        case .connect(let h, let address, let length):
            io_uring_prep_connect(sqe, h.raw, address, length)
            markRegistered(h)
        case .timeout(let spec):
            io_uring_prep_timeout(sqe, spec, 0, 0)
        case .cancel(let id):
            io_uring_prep_cancel64(sqe, id, 0)
        case .onOwner:
            preconditionFailure("onOwner has no SQE")
        }
    }
}
