import Crypto
import Locking
import Logging
import Sockets
import SystemCalls
import SystemPackage
import Uring

#if canImport(Glibc)
import Glibc
#endif

/// An authenticated TCP connection to the peer vmhad, driven by io_uring.
///
/// Establishing it runs ``PeerHandshake`` (mutual HMAC-SHA256 challenge-response on the cluster
/// key) under a deadline; nothing but handshake frames is accepted before both sides proved the
/// key. Afterwards frames are read with ``PeerFrameDecoder``: a malformed frame ends the
/// connection before anything of it is applied.
public final class PeerConnection: Sendable {
    public static let handshakeTimeout: Duration = .seconds(10)
    static let receiveBufferSize = 1 << 20

    public let ring: IOUring
    public let socket: FileDescriptor
    public let peerHost: String
    public let peerAddress: String
    let initialBytes: [UInt8]
    private let closed = Locked(false)

    private init(ring: IOUring, socket: FileDescriptor, peerHost: String, initialBytes: [UInt8]) {
        self.ring = ring
        self.socket = socket
        self.peerHost = peerHost
        self.peerAddress = TCPSocket.peerAddress(socket)
        self.initialBytes = initialBytes
    }

    /// Connects to `address` and authenticates (connector role).
    public static func connect(
        to address: TCPSocket.Address, configuration: PeerHandshake.Configuration, ring: IOUring, logger: Logger,
        tcpConnected: () -> Void = {}
    ) async throws -> PeerConnection {
        let socket = try TCPSocket.socket()
        TCPSocket.setBufferSizes(socket, bytes: 8 << 20)
        do {
            try await withDeadline(handshakeTimeout, ring: ring) {
                try await address.withSocketAddress { try await ring.connect(.file(socket), to: $0) }
            }
            tcpConnected()
            return try await authenticate(socket, role: .connector, configuration: configuration, ring: ring)
        } catch {
            try? socket.close()
            throw error
        }
    }

    /// Authenticates a socket returned by `accept` (acceptor role).
    public static func accept(
        _ socket: FileDescriptor, configuration: PeerHandshake.Configuration, ring: IOUring, logger: Logger
    ) async throws -> PeerConnection {
        TCPSocket.setBufferSizes(socket, bytes: 8 << 20)
        do {
            return try await authenticate(socket, role: .acceptor, configuration: configuration, ring: ring)
        } catch {
            try? socket.close()
            throw error
        }
    }

    private static func authenticate(
        _ socket: FileDescriptor, role: PeerHandshake.Role, configuration: PeerHandshake.Configuration, ring: IOUring
    ) async throws -> PeerConnection {
        try await withDeadline(handshakeTimeout, ring: ring) {
            var handshake = PeerHandshake(role: role, configuration: configuration)
            let start = handshake.start()
            if !start.bytesToSend.isEmpty { try await ring.sendAll(.file(socket), bytes: start.bytesToSend) }
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 << 10, alignment: 16)
            defer { buffer.deallocate() }
            while true {
                let n = try await ring.recv(.file(socket), into: buffer)
                if n == 0 { throw PeerLinkError.closedDuringHandshake }
                let output = handshake.receive(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                if !output.bytesToSend.isEmpty { try? await ring.sendAll(.file(socket), bytes: output.bytesToSend) }
                for event in output.events {
                    switch event {
                    case .authenticated(let peerHost, _, let remaining):
                        return PeerConnection(ring: ring, socket: socket, peerHost: peerHost, initialBytes: remaining)
                    case .failed(let error):
                        throw PeerLinkError.handshakeFailed(error)
                    }
                }
            }
        }
    }

    /// Reads frames until the stream ends, the peer misbehaves, or the task is cancelled;
    /// `handle` sees each decoded message in order.
    public func receiveMessages(_ handle: (PeerMessage) async throws -> Void) async throws {
        try await receiveMessages(blocks: nil, handle)
    }

    /// ``receiveMessages(_:)``; with `blocks`, the data of RESYNC_DATA frames up to `blocks.largestBufferSize - blockHeadroom`
    /// bytes is received straight into a page-aligned buffer of that pool, at `blockHeadroom`
    /// (``PeerResyncData/Content/block(_:)``), instead of being copied out of the receive buffer.
    func receiveMessages(blocks: FrameBufferPool?, _ handle: (PeerMessage) async throws -> Void) async throws {
        var decoder = PeerFrameDecoder()
        decoder.receive(initialBytes)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.receiveBufferSize, alignment: 4096)
        defer { buffer.deallocate() }
        while true {
            while let frame = try decoder.next() {
                try await handle(try PeerMessage(frame: frame))
            }
            if let blocks, let (header, received) = decoder.takeIncompletePayload(if: { Self.receivesAsBlock($0, pool: blocks) }) {
                try await handle(.resyncData(try await receiveBlock(header, received: received, pool: blocks)))
                continue
            }
            let n = try await ring.recv(.file(socket), into: buffer)
            if n == 0 { throw PeerLinkError.closedByPeer }
            decoder.receive(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        }
    }

    /// Room in front of a block's data: the data lands page-aligned, the offset field before it.
    static let blockHeadroom = 4096

    private static func receivesAsBlock(_ header: PeerFrameHeader, pool: FrameBufferPool) -> Bool {
        header.type == .resyncData && !header.flags.contains(.zeroes)
            && Int(header.payloadLength) - 8 <= pool.largestBufferSize - blockHeadroom
    }

    /// Receives the rest of a RESYNC_DATA payload (offset u64, data) into a buffer of `pool`.
    private func receiveBlock(
        _ header: PeerFrameHeader, received: [UInt8], pool: FrameBufferPool
    ) async throws -> PeerResyncData {
        let storage = pool.take(atLeast: Self.blockHeadroom + Int(header.payloadLength) - 8)
        var owned = true
        defer { if owned { pool.recycle(storage) } }
        let start = Self.blockHeadroom - 8, end = start + Int(header.payloadLength)
        UnsafeMutableRawBufferPointer(rebasing: storage[start..<(start + received.count)]).copyBytes(from: received)
        var filled = start + received.count
        while filled < end {
            let n = try await ring.recv(.file(socket), into: UnsafeMutableRawBufferPointer(rebasing: storage[filled..<end]))
            if n == 0 { throw PeerLinkError.closedByPeer }
            filled += n
        }
        let offset = UInt64(bigEndian: storage.loadUnaligned(fromByteOffset: start, as: UInt64.self))
        owned = false
        let block = ReceivedBlock(storage: storage, data: Self.blockHeadroom..<end, pool: pool)
        return try PeerResyncData(header: header, offset: offset, block: block)
    }

    /// Sends raw frame bytes (the caller keeps frames whole and ordered).
    public func send(_ bytes: UnsafeRawBufferPointer) async throws(Errno) {
        try await ring.sendAll(.file(socket), bytes)
    }

    /// Sends one whole encoded frame.
    public func send(_ frame: [UInt8]) async throws(Errno) {
        try await ring.sendAll(.file(socket), bytes: frame)
    }

    /// Ends the connection: pending receives and sends fail, the peer sees EOF.
    public func close() {
        let first = closed.withLock { c -> Bool in
            defer { c = true }
            return !c
        }
        guard first else { return }
        _ = try? Syscall.call("shutdown") { Glibc.shutdown(socket.rawValue, Int32(SHUT_RDWR)) }
    }

    deinit { try? socket.close() }
}

/// Runs `body`, cancelling it when `timeout` passes first (it then throws `PeerLinkError.timedOut`).
func withDeadline<T: Sendable>(
    _ timeout: Duration, ring: IOUring, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask(executorPreference: ring) { try await body() }
        group.addTask(executorPreference: ring) {
            try await ring.sleep(for: timeout)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else { throw PeerLinkError.timedOut }
        return value
    }
}
