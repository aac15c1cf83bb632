/// One encoded frame owned until it is on the wire (an aligned buffer, so the data of a WRITE or
/// RESYNC_DATA is copied at most once: from the guest's buffer into the frame).
final class OutboundFrame: @unchecked Sendable {
    /// The frame's bytes.
    let bytes: UnsafeMutableRawBufferPointer
    /// The allocation `bytes` lies in, and the pool it goes back to (nil: deallocated).
    private let storage: UnsafeMutableRawBufferPointer
    private let pool: FrameBufferPool?

    init(count: Int) {
        // Page-aligned: a secondary writes replicated data from these buffers, and only an
        // aligned buffer can go to the image with O_DIRECT instead of through the page cache.
        storage = .allocate(byteCount: count, alignment: 4096)
        bytes = storage
        pool = nil
    }

    /// The frame at `range` of a buffer taken from `pool` (built in place: no copy), which gets
    /// the buffer back once the frame is gone.
    init(pooled buffer: UnsafeMutableRawBufferPointer, range: Range<Int>, pool: FrameBufferPool) {
        storage = buffer
        bytes = UnsafeMutableRawBufferPointer(rebasing: buffer[range])
        self.pool = pool
    }

    convenience init(_ encoded: [UInt8]) {
        self.init(count: encoded.count)
        bytes.copyBytes(from: encoded)
    }

    /// Header prefix (from `encodePrefix`) followed by `data`.
    convenience init(prefix: [UInt8], data: UnsafeRawBufferPointer) {
        self.init(count: prefix.count + data.count)
        bytes.copyBytes(from: prefix)
        if data.count > 0 {
            UnsafeMutableRawBufferPointer(rebasing: bytes[prefix.count...]).copyMemory(from: data)
        }
    }

    deinit {
        if let pool { pool.recycle(storage) } else { storage.deallocate() }
    }
}
