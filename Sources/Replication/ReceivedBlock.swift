#if canImport(Glibc)
import Glibc
#endif

/// The data of a received RESYNC_DATA frame, received straight into a pooled page-aligned buffer
/// (``PeerConnection/receiveMessages(blocks:_:)``): a secondary writes it to the image with
/// O_DIRECT as it is, with no copy and no freshly faulted pages per block.
public final class ReceivedBlock: @unchecked Sendable, Hashable {  // immutable once received
    /// The data (page-aligned).
    public let bytes: UnsafeRawBufferPointer
    private let storage: UnsafeMutableRawBufferPointer
    private let pool: FrameBufferPool

    init(storage: UnsafeMutableRawBufferPointer, data: Range<Int>, pool: FrameBufferPool) {
        self.storage = storage
        self.bytes = UnsafeRawBufferPointer(rebasing: storage[data])
        self.pool = pool
    }

    deinit { pool.recycle(storage) }

    public static func == (a: ReceivedBlock, b: ReceivedBlock) -> Bool {
        a.bytes.count == b.bytes.count && memcmp(a.bytes.baseAddress!, b.bytes.baseAddress!, a.bytes.count) == 0
    }

    public func hash(into hasher: inout Hasher) { hasher.combine(bytes: bytes) }
}
