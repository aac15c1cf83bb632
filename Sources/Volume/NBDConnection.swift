import Locking
import Logging
import SystemCalls
import SystemPackage
import Uring

#if canImport(Glibc)
import Glibc
#endif

/// One NBD client: handshake, then requests executed concurrently against the volume, with
/// replies serialized on the socket. Runs on the volume's ring (executor preference), so a
/// request's path from `recv` to the image write and back to `send` never changes thread.
///
/// Malformed input never takes the server down: a bad request gets an error reply, an
/// untrustworthy stream (bad magic, oversized write) closes this connection only.
struct NBDConnection: Sendable {
    static let receiveBufferSize = 256 << 10
    /// Requests of one client in flight at once; reading stops until one completes.
    static let maximumInFlight = 128
    /// A request unanswered this long is logged once (a held write waits for the peer or the vote).
    static let slowRequest = Duration.seconds(20)
    static let slowRequestCheck: UInt64 = 5_000_000_000

    struct PendingRequest: Sendable {
        var command: NBD.Command
        var offset: UInt64
        var length: UInt32
        var since: ContinuousClock.Instant
        var reported = false
    }

    let socket: FileDescriptor
    let volume: LocalVolume
    let export: NBDExport
    let handshakeTimeout: Duration
    let logger: Logger
    var ring: IOUring { volume.ring }

    func run() async {
        defer { try? socket.close() }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.receiveBufferSize, alignment: 4096)
        defer { buffer.deallocate() }
        do {
            guard let (remaining, negotiated) = try await handshake(buffer) else { return }
            try await transmission(buffer, initial: remaining, negotiated: negotiated)
        } catch let error as NBDProtocolError {
            logger.warning("NBD client dropped: protocol error", metadata: ["export": "\(export.name)", "error": "\(error)"])
        } catch let error as Errno where error == .canceled {
            logger.debug("NBD connection cancelled", metadata: ["export": "\(export.name)"])
        } catch {
            logger.info("NBD client gone", metadata: ["export": "\(export.name)", "error": "\(error)"])
        }
    }

    /// Returns the bytes received after the export was chosen and what was negotiated, or nil
    /// when the client left.
    private func handshake(_ buffer: UnsafeMutableRawBufferPointer) async throws -> ([UInt8], NBDNegotiated)? {
        let done = Locked(false)
        // A client that never finishes the handshake would hold its socket forever.
        let (seconds, attoseconds) = handshakeTimeout.components
        let timeout = UInt64(max(0, seconds)) * 1_000_000_000 + UInt64(max(0, attoseconds) / 1_000_000_000)
        let watchdog = Task(executorPreference: ring) { [socket, ring] in
            try? await ring.sleep(nanoseconds: timeout)
            if !Task.isCancelled && !done.withLock({ $0 }) { _ = try? Syscall.call("shutdown") { Glibc.shutdown(socket.rawValue, Int32(SHUT_RDWR)) } }
        }
        defer {
            done.withLock { $0 = true }
            watchdog.cancel()
        }
        try await ring.sendAll(.file(socket), bytes: NBDServerHandshake.greeting)
        var state = NBDServerHandshake(exports: [export], defaultExportName: export.name)
        while true {
            let n = try await ring.recv(.file(socket), into: buffer)
            if n == 0 { return nil }
            let output = state.receive(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            if !output.bytesToSend.isEmpty { try await ring.sendAll(.file(socket), bytes: output.bytesToSend) }
            for event in output.events {
                switch event {
                case .exportSelected(_, let remaining):
                    logger.debug("NBD client attached", metadata: ["export": "\(export.name)", "structured": "\(state.negotiated.structuredReplies)"])
                    return (remaining, state.negotiated)
                case .aborted:
                    return nil
                case .failed(let error):
                    throw error
                case .optionRefused(let option, _, let reason):
                    logger.debug("NBD option refused", metadata: ["option": "\(option)", "reason": "\(reason)"])
                }
            }
        }
    }

    private func transmission(_ buffer: UnsafeMutableRawBufferPointer, initial: [UInt8], negotiated: NBDNegotiated) async throws {
        var decoder = NBDRequestDecoder(export: export, negotiated: negotiated)
        decoder.receive(initial)
        let replies = SerializedSender(ring: ring, socket: socket)
        let slots = AsyncSemaphore(Self.maximumInFlight)
        // A guest waits on every request: one unanswered for long is worth a line in the log,
        // which also tells whether vmhad ever received it.
        let pending = Locked<[UInt64: PendingRequest]>([:])
        let watchdog = Task(executorPreference: ring) { [ring, logger, export] in
            while !Task.isCancelled {
                try? await ring.sleep(nanoseconds: Self.slowRequestCheck)
                let now = ContinuousClock.now
                let slow = pending.withLock { requests -> [PendingRequest] in
                    var slow: [PendingRequest] = []
                    for (cookie, request) in requests where !request.reported && request.since.duration(to: now) > Self.slowRequest {
                        requests[cookie]?.reported = true
                        slow.append(request)
                    }
                    return slow
                }
                for request in slow {
                    logger.warning(
                        "NBD request unanswered",
                        metadata: ["export": "\(export.name)", "command": "\(request.command)", "offset": "\(request.offset)",
                                   "length": "\(request.length)", "seconds": "\(request.since.duration(to: now).components.seconds)"])
                }
            }
        }
        defer { watchdog.cancel() }
        try await withThrowingDiscardingTaskGroup { group in
            while true {
                while let action = try decoder.next() {
                    switch action {
                    case .request(let request):
                        await slots.acquire()
                        let cookie = request.cookie
                        pending.withLock {
                            $0[cookie] = PendingRequest(command: request.command, offset: request.offset, length: request.length, since: .now)
                        }
                        group.addTask(executorPreference: ring) {
                            defer {
                                pending.withLock { _ = $0.removeValue(forKey: cookie) }
                                slots.release()
                            }
                            await volume.serve(request, replies: replies, export: export, negotiated: negotiated, logger: logger)
                        }
                    case .reject(let cookie, let error, let reason):
                        logger.debug("NBD request rejected", metadata: ["export": "\(export.name)", "reason": "\(reason)"])
                        // With structured replies a READ or BLOCK_STATUS error is an error chunk.
                        if negotiated.structuredReplies {
                            await replies.send(NBDStructuredReply.error(cookie: cookie, error, message: reason))
                        } else {
                            await replies.send(NBDSimpleReply(cookie: cookie, error: error).header)
                        }
                    case .disconnect:
                        return  // the group waits for requests in flight; their replies still go out
                    }
                }
                let n = try await ring.recv(.file(socket), into: buffer)
                if n == 0 { return }
                decoder.receive(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            }
        }
    }
}
