#if canImport(Glibc)
import Glibc
#endif
import Uring

/// Page-aligned buffers of one size, reused: resync moves gigabytes through multi-MiB blocks, and
/// a fresh buffer of that size costs a page fault (and the kernel zeroing a page) per 4 KiB on
/// first touch — more CPU than the copy it is for. At most `capacity` idle buffers are kept.
final class FrameBufferPool: @unchecked Sendable {  // the free list is only touched under its lock
    let bufferSize: Int
    let capacity: Int
    private let idle = Locked<[UnsafeMutableRawPointer]>([])

    init(bufferSize: Int, capacity: Int) {
        self.bufferSize = bufferSize
        self.capacity = capacity
    }

    deinit {
        idle.withLock { buffers in
            for buffer in buffers { buffer.deallocate() }
        }
    }

    /// An idle buffer, or a new one.
    func take() -> UnsafeMutableRawBufferPointer {
        let reused = idle.withLock { $0.popLast() }
        let base = reused ?? UnsafeMutableRawPointer.allocate(byteCount: bufferSize, alignment: 4096)
        return UnsafeMutableRawBufferPointer(start: base, count: bufferSize)
    }

    /// Returns a buffer from ``take()``; freed when the pool already holds `capacity`.
    func recycle(_ buffer: UnsafeMutableRawBufferPointer) {
        precondition(buffer.count == bufferSize, "buffer of another pool")
        let kept = idle.withLock { buffers -> Bool in
            guard buffers.count < capacity else { return false }
            buffers.append(buffer.baseAddress!)
            return true
        }
        if !kept { buffer.deallocate() }
    }
}
