#if canImport(Glibc)
import Glibc
#endif
import Locking

/// Page-aligned buffers in a few size classes, reused: resync moves gigabytes through multi-MiB
/// blocks, and a fresh buffer of that size costs a page fault (and the kernel zeroing a page) per
/// 4 KiB on first touch — more CPU than the copy it is for. An incremental resync moves hundreds
/// of scattered grains at once: they take buffers of a small class, so that neither a 4 MiB
/// mapping per grain nor an idle list of 4 MiB buffers is needed for them. Each class keeps at most
/// its `idle` count of unused buffers.
final class FrameBufferPool: @unchecked Sendable {  // the free lists are only touched under their locks
    struct SizeClass {
        var bufferSize: Int
        var idle: Int
    }

    private let classes: [SizeClass]
    private let free: [Locked<[UnsafeMutableRawPointer]>]

    /// `classes` in any order; a buffer is taken from the smallest class that holds the request.
    init(_ classes: [SizeClass]) {
        precondition(!classes.isEmpty)
        self.classes = classes.sorted { $0.bufferSize < $1.bufferSize }
        free = classes.map { _ in Locked([]) }
    }

    deinit {
        for list in free {
            list.withLock { buffers in
                for buffer in buffers { buffer.deallocate() }
            }
        }
    }

    /// Resync blocks of up to `chunk` bytes behind `headroom`: whole ones, and scattered grains of
    /// up to one window unit (``ReplicationOptions/resyncUnitsPerBlock``).
    static func forResync(headroom: Int, chunk: Int, idleBlocks: Int, idleUnits: Int) -> FrameBufferPool {
        FrameBufferPool([
            .init(bufferSize: headroom + max(1, chunk / ReplicationOptions.resyncUnitsPerBlock), idle: idleUnits),
            .init(bufferSize: headroom + chunk, idle: idleBlocks),
        ])
    }

    /// The largest request ``take(atLeast:)`` serves.
    var largestBufferSize: Int { classes[classes.count - 1].bufferSize }

    /// An idle or new buffer of the smallest class of at least `count` bytes.
    func take(atLeast count: Int) -> UnsafeMutableRawBufferPointer {
        guard let index = classes.firstIndex(where: { $0.bufferSize >= count }) else {
            preconditionFailure("\(count) bytes requested from a pool of at most \(largestBufferSize)")
        }
        let size = classes[index].bufferSize
        let base = free[index].withLock { $0.popLast() } ?? UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)
        return UnsafeMutableRawBufferPointer(start: base, count: size)
    }

    /// Returns a buffer from ``take(atLeast:)``; freed when its class already keeps enough idle ones.
    func recycle(_ buffer: UnsafeMutableRawBufferPointer) {
        guard let index = classes.firstIndex(where: { $0.bufferSize == buffer.count }) else {
            preconditionFailure("buffer of another pool")
        }
        let kept = free[index].withLock { buffers -> Bool in
            guard buffers.count < classes[index].idle else { return false }
            buffers.append(buffer.baseAddress!)
            return true
        }
        if !kept { buffer.deallocate() }
    }
}
