import SystemPackage

/// Serializes messages on one stream socket: concurrent requests finish in any order, but one
/// message's bytes must never interleave with another's. Senders are served first come, first served.
public final class SerializedSender: Sendable {
    private struct State {
        var busy = false
        var waiters: [CheckedContinuation<Void, Never>] = []
        var broken = false
    }

    private let ring: IOUring
    private let socket: FileDescriptor
    private let state = Locked(State())

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
    public var isBroken: Bool { state.withLock { $0.broken } }

    /// Sends all of `bytes` after every earlier sender; a failure marks the stream broken.
    nonisolated(nonsending) public func send(_ bytes: UnsafeRawBufferPointer) async {
        let mustWait = state.withLock { s -> Bool in
            if s.busy { return true }
            s.busy = true
            return false
        }
        if mustWait {
            await withCheckedContinuation { continuation in
                let runNow = state.withLock { s -> Bool in
                    if !s.busy {
                        s.busy = true
                        return true
                    }
                    s.waiters.append(continuation)
                    return false
                }
                if runNow { continuation.resume() }
            }
        }
        if !state.withLock({ $0.broken }) {
            do {
                try await ring.sendAll(.file(socket), bytes)
            } catch {
                // The peer is gone; the receive side sees it too and ends the connection.
                state.withLock { $0.broken = true }
            }
        }
        let next = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if s.waiters.isEmpty {
                s.busy = false
                return nil
            }
            return s.waiters.removeFirst()  // stays busy: ownership passes to the next sender
        }
        next?.resume()
    }
}
