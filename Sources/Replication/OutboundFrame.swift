/// One encoded frame owned until it is on the wire (an aligned buffer, so the data of a WRITE or
/// RESYNC_DATA is copied exactly once: from the guest's buffer into the frame).
final class OutboundFrame: @unchecked Sendable {
    let bytes: UnsafeMutableRawBufferPointer

    init(count: Int) {
        // Page-aligned: a secondary writes replicated data from these buffers, and only an
        // aligned buffer can go to the image with O_DIRECT instead of through the page cache.
        bytes = .allocate(byteCount: count, alignment: 4096)
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

    deinit { bytes.deallocate() }
}
