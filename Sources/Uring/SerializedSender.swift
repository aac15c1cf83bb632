import Locking
import SystemPackage

/// Serializes messages on one stream socket: concurrent requests finish in any order, but one
/// message's bytes must never interleave with another's. Senders are served first come, first served.
public final class SerializedSender: Sendable {
    private let ring: IOUring
    private let socket: FileDescriptor
    /// One sender at a time, in arrival order (the slot passes straight to the next waiter).
    private let turn = AsyncSemaphore(1)
    private let broken = Locked(false)

    public init(ring: IOUring, socket: FileDescriptor) {
        self.ring = ring
        self.socket = socket
    }

    nonisolated(nonsending) public func send(_ bytes: [UInt8]) async {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 16)
        defer { buffer.deallocate() }
        buffer.copyBytes(from: bytes)
        await send(UnsafeRawBufferPointer(buffer))
    }

    /// True once a send failed: the stream is unusable and later sends are dropped.
    public var isBroken: Bool { broken.withLock { $0 } }

    /// Sends all of `bytes` after every earlier sender; a failure marks the stream broken.
    nonisolated(nonsending) public func send(_ bytes: UnsafeRawBufferPointer) async {
        await turn.acquire()
        if !isBroken {
            do {
                try await ring.sendAll(.file(socket), bytes)
            } catch {
                // The peer is gone; the receive side sees it too and ends the connection.
                broken.withLock { $0 = true }
            }
        }
        turn.release()
    }
}
