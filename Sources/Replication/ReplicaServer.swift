import Crypto
import Locking
import Logging
import Sockets
import SystemPackage
import Uring
import Volume

#if canImport(Glibc)
import Glibc
#endif

/// The secondary's side: accepts authenticated peer connections, matches each to a local
/// volume by the name in the primary's VOLUME_STATE, and applies what arrives — replicated
/// writes (acknowledged once written, durably for FUA/FLUSH) and resync blocks — until the link
/// ends. A sync target is marked Inconsistent before its first resync block and Consistent only
/// after RESYNC_DONE.
public final class ReplicaServer: Sendable {
    public let listenAddress: TCPSocket.Address
    public let ring: IOUring
    public let options: ReplicationOptions
    let logger: Logger
    private let registry: Locked<Registry>

    /// What the server serves, changed while it runs: a host's role changes add and remove
    /// volumes here without touching any other volume's link (one listener for the daemon's life).
    private struct Registry {
        var volumes: [String: LocalVolume] = [:]
        var statuses: [String: ReplicationStatus] = [:]
        /// The session attached to each volume.
        var sessions: [String: ReplicationSession] = [:]
        /// Sessions still being served, and who waits for their end (`remove`).
        var running: Set<ObjectIdentifier> = []
        var endWaiters: [ObjectIdentifier: [CheckedContinuation<Void, Never>]] = [:]
    }

    /// Told each link state change of a volume (its name), outside the server's lock: the node's
    /// loop looks again on it instead of polling.
    private let onLinkChange: @Sendable (String, ReplicationStatus) -> Void
    /// Answers a SUPPORT_REQUEST (the since seconds) with this node's part of a support bundle.
    private let supportPart = Locked<(@Sendable (UInt64) async -> [UInt8])?>(nil)

    public init(
        listen: TCPSocket.Address, volumes: [LocalVolume] = [], ring: IOUring, options: ReplicationOptions, logger: Logger,
        onLinkChange: @escaping @Sendable (String, ReplicationStatus) -> Void = { _, _ in }
    ) {
        self.onLinkChange = onLinkChange
        self.listenAddress = listen
        self.ring = ring
        self.options = options
        self.logger = logger
        var registry = Registry()
        for volume in volumes {
            registry.volumes[volume.configuration.name] = volume
            registry.statuses[volume.configuration.name] = ReplicationStatus()
        }
        self.registry = Locked(registry)
    }

    /// From now on a SUPPORT_REQUEST is answered with what `part` returns for its since seconds
    /// (without, it is refused as unexpected).
    public func answerSupportRequests(with part: @escaping @Sendable (UInt64) async -> [UInt8]) {
        supportPart.withLock { $0 = part }
    }

    public func status(of volume: String) -> ReplicationStatus? { registry.withLock { $0.statuses[volume] } }

    /// The volumes served now, by name.
    public var volumeNames: Set<String> { registry.withLock { Set($0.volumes.keys) } }

    /// Serves `volume` from now on (a peer offering it attaches); a volume of the same name is
    /// replaced.
    public func add(_ volume: LocalVolume) {
        registry.withLock {
            $0.volumes[volume.configuration.name] = volume
            $0.statuses[volume.configuration.name] = ReplicationStatus()
        }
    }

    /// Stops serving the volume: its link (if any) is ended with a reason, and this returns once
    /// nothing more is applied to it, so that the caller may close or promote it. Other volumes'
    /// links are not touched.
    public func remove(_ name: String) async {
        let session = registry.withLock { r -> ReplicationSession? in
            r.volumes[name] = nil
            r.statuses[name] = nil
            return r.sessions.removeValue(forKey: name)
        }
        guard let session else { return }
        session.fail(.refused("volume \(name) is no longer served by this host's replica server"))
        let id = ObjectIdentifier(session)
        await withCheckedContinuation { continuation in
            let ended = registry.withLock { r -> Bool in
                guard r.running.contains(id) else { return true }
                r.endWaiters[id, default: []].append(continuation)
                return false
            }
            if ended { continuation.resume() }
        }
    }

    /// Binds the listening socket (SO_REUSEADDR) and accepts connections until cancelled.
    public func run() async throws {
        let listener = try TCPSocket.listen(listenAddress)
        await run(listener: listener)
    }

    /// Accepts connections on `listener` (closed at the end) until cancelled.
    public func run(listener: FileDescriptor) async {
        defer { try? listener.close() }
        logger.info("replication listening", metadata: ["address": "\(listenAddress)"])
        await withDiscardingTaskGroup { group in
            while !Task.isCancelled {
                let socket: FileDescriptor
                do {
                    socket = try await ring.accept(.file(listener))
                } catch .canceled {
                    break
                } catch {
                    logger.error("replication accept failed: \(error)")
                    try? await ring.sleep(nanoseconds: 100_000_000)
                    continue
                }
                group.addTask(executorPreference: ring) { await self.serve(socket) }
            }
            group.cancelAll()
        }
    }

    private func serve(_ socket: FileDescriptor) async {
        let address = TCPSocket.peerAddress(socket)
        let connection: PeerConnection
        do {
            connection = try await PeerConnection.accept(socket, configuration: options.handshake, ring: ring, logger: logger)
        } catch {
            // A wrong key, a stranger, garbage: refused and logged; nothing was applied.
            logger.warning("replication peer refused", metadata: ["from": "\(address)", "reason": "\(error)"])
            return
        }
        let session = ReplicationSession(connection: connection, timing: options.timing, logger: logger)
        let id = ObjectIdentifier(session)
        registry.withLock { _ = $0.running.insert(id) }
        let attached = Locked<String?>(nil)
        await withTaskGroup(of: Void.self) { group in
            group.addTask(executorPreference: ring) { await session.runSender() }
            group.addTask(executorPreference: ring) { await session.runKeepalive() }
            group.addTask(executorPreference: ring) {
                do {
                    try await self.apply(session: session, attached: attached)
                } catch {
                    session.fail(error as? PeerLinkError ?? .unexpected("\(error)"))
                }
            }
            await group.waitForAll()
        }
        let name = attached.withLock { $0 }
        let (waiters, changed) = registry.withLock { r -> ([CheckedContinuation<Void, Never>], ReplicationStatus?) in
            r.running.remove(id)
            var changed: ReplicationStatus?
            // Only the volume's current session reports its end (a replaced or removed one does not).
            if let name, r.sessions[name] === session {
                r.sessions[name] = nil
                r.statuses[name]?.lastError = session.failure.map { "\($0)" }
                changed = Self.advance(&r, name, .failed, logger: logger)
            }
            return (r.endWaiters.removeValue(forKey: id) ?? [], changed)
        }
        if let name, let changed { onLinkChange(name, changed) }
        for waiter in waiters { waiter.resume() }
    }

    /// Each link change of a volume goes through `ReplicationLinkMachine`; an illegal one is a
    /// bug here, logged, and the state is kept.
    /// Returns the status after the change, if the state changed.
    private static func advance(_ r: inout Registry, _ name: String, _ event: ReplicationLinkMachine.Event, logger: Logger) -> ReplicationStatus? {
        guard let state = r.statuses[name]?.link else { return nil }
        do throws(ReplicationLinkMachine.TransitionError) {
            let next = try ReplicationLinkMachine.transition(from: state, on: event).state
            r.statuses[name]?.link = next
            return next != state ? r.statuses[name] : nil
        } catch {
            logger.error("replication link: \(error)", metadata: ["volume": "\(name)"])
            return nil
        }
    }

    /// The link event, if `session` is still the volume's.
    private func advance(_ name: String, _ event: ReplicationLinkMachine.Event, session: ReplicationSession) {
        let logger = self.logger
        let changed = registry.withLock { r -> ReplicationStatus? in
            guard r.sessions[name] === session else { return nil }
            return Self.advance(&r, name, event, logger: logger)
        }
        if let changed { onLinkChange(name, changed) }
    }

    /// Attaches `session` to the volume the peer offers, replacing an older session of that
    /// volume; nil when the volume is not served here.
    private func claim(_ name: String, session: ReplicationSession) -> LocalVolume? {
        let logger = self.logger
        let (volume, replaced, changed) = registry.withLock { r -> (LocalVolume?, ReplicationSession?, ReplicationStatus?) in
            guard let volume = r.volumes[name] else { return (nil, nil, nil) }
            let replaced = r.sessions[name]
            r.sessions[name] = session
            return (volume, replaced, Self.advance(&r, name, .offered, logger: logger))
        }
        if let changed { onLinkChange(name, changed) }
        replaced?.fail(.refused("replaced by a new connection"))
        return volume
    }

    /// Received resync blocks kept for reuse: the primary's window, and a few more.
    static let idleBlockBuffers = 32

    private func apply(session: ReplicationSession, attached: Locked<String?>) async throws {
        let inFlight = InFlightTracker(limit: options.applyWindow)
        var volume: LocalVolume?
        var sourceCurrent: UInt64 = 0
        // Resync blocks arrive straight into these (the default block size; larger ones are copied).
        let blocks = FrameBufferPool.forResync(
            headroom: PeerConnection.blockHeadroom, chunk: ReplicationOptions.defaultResyncChunkBytes,
            idleBlocks: Self.idleBlockBuffers, idleUnits: options.applyWindow)
        try await withThrowingDiscardingTaskGroup { group in
            defer { group.cancelAll() }
            /// Applies a change concurrently (bounded by the window) and acknowledges it with its
            /// outcome: 0, or the errno of the local failure.
            func applyThenAcknowledge(_ sequence: UInt64, _ apply: @escaping @Sendable () async throws(VolumeError) -> Void) async {
                await inFlight.acquire()
                group.addTask(executorPreference: ring) {
                    defer { inFlight.release() }
                    let status = await Self.errno(apply)
                    session.post(PeerAck(volumeID: session.volumeID, sequence: sequence, status: status).encoded())
                }
            }
            try await session.connection.receiveMessages(blocks: blocks) { message in
                session.frameReceived()
                switch message {
                case .volumeState(let peerState):
                    guard volume == nil else { throw PeerLinkError.unexpected("second VOLUME_STATE") }
                    guard let local = self.claim(peerState.name, session: session) else {
                        session.post(PeerGoodbye(reason: 1, message: "no volume \(peerState.name) here").encoded())
                        throw PeerLinkError.refused("the peer offered unknown volume \(peerState.name)")
                    }
                    attached.withLock { $0 = peerState.name }
                    try await self.accept(peerState, volume: local, session: session)
                    volume = local
                    sourceCurrent = peerState.generations.current
                case .write(let write):
                    guard let volume else { throw PeerLinkError.unexpected("WRITE before VOLUME_STATE") }
                    let data = OutboundFrame(count: write.data.count)
                    data.bytes.copyBytes(from: write.data)
                    await applyThenAcknowledge(write.sequence) { () async throws(VolumeError) in
                        try await volume.write(UnsafeRawBufferPointer(data.bytes), at: write.offset, fua: write.fua, origin: .peer)
                    }
                case .trim(let trim):
                    guard let volume else { throw PeerLinkError.unexpected("TRIM before VOLUME_STATE") }
                    await applyThenAcknowledge(trim.sequence) { () async throws(VolumeError) in
                        try await volume.trim(offset: trim.offset, length: trim.length, origin: .peer)
                    }
                case .writeZeroes(let zeroes):
                    guard let volume else { throw PeerLinkError.unexpected("WRITE_ZEROES before VOLUME_STATE") }
                    await applyThenAcknowledge(zeroes.sequence) { () async throws(VolumeError) in
                        try await volume.writeZeroes(
                            offset: zeroes.offset, length: zeroes.length, allocate: zeroes.noHole, fua: zeroes.fua, origin: .peer)
                    }
                case .resyncData(let block):
                    guard let volume else { throw PeerLinkError.unexpected("RESYNC_DATA before VOLUME_STATE") }
                    let content = block.content
                    await applyThenAcknowledge(block.requestID) { () async throws(VolumeError) in
                        switch content {
                        case .block(let data):
                            try await volume.write(data.bytes, at: block.offset, fua: false, origin: .peer)
                        case .data(let bytes):
                            // Larger than a pooled block: copied once into an aligned buffer for O_DIRECT.
                            let data = OutboundFrame(count: bytes.count)
                            data.bytes.copyBytes(from: bytes)
                            try await volume.write(UnsafeRawBufferPointer(data.bytes), at: block.offset, fua: false, origin: .peer)
                        case .zeroes(let length):
                            // A hole on the source stays a hole here.
                            try await volume.trim(offset: block.offset, length: UInt64(length), origin: .peer)
                        }
                    }
                case .resyncChecksum(let request):
                    guard let volume else { throw PeerLinkError.unexpected("RESYNC_CHECKSUM before VOLUME_STATE") }
                    guard case .sha256(let theirs) = request.digest else {
                        throw PeerLinkError.unexpected("RESYNC_CHECKSUM with a digest other than SHA-256")
                    }
                    await inFlight.acquire()
                    group.addTask(executorPreference: ring) {
                        defer { inFlight.release() }
                        var status: UInt32 = 0
                        do {
                            // A hole here is zeroes: compared by its digest, unread.
                            let length = UInt64(request.length)
                            let holeSame = try await volume.resyncHole(offset: request.offset, maxLength: length) { hole in
                                hole == length ? ZeroDigest.sha256(length: Int(length)) == theirs : nil
                            }
                            let same: Bool
                            if let known = holeSame ?? nil {
                                same = known
                            } else {
                                same = try await volume.readForResync(offset: request.offset, length: Int(request.length)) { bytes in
                                    Array(SHA256.hash(data: bytes)) == theirs
                                }
                            }
                            status = same ? 0 : PeerAck.checksumMismatch
                        } catch {
                            status = UInt32((error as? VolumeError)?.errno.rawValue ?? EIO)
                        }
                        session.post(PeerAck(volumeID: session.volumeID, sequence: request.requestID, status: status).encoded())
                    }
                case .flush(let flush):
                    guard let volume else { throw PeerLinkError.unexpected("FLUSH before VOLUME_STATE") }
                    // A barrier: everything received before it is written, then made durable.
                    await inFlight.drain()
                    let status = await Self.errno { () async throws(VolumeError) in try await volume.flush(origin: .peer) }
                    session.post(PeerAck(volumeID: session.volumeID, sequence: flush.sequence, status: status).encoded())
                case .resyncDone:
                    guard let volume else { throw PeerLinkError.unexpected("RESYNC_DONE before VOLUME_STATE") }
                    await inFlight.drain()
                    try await volume.flush(origin: .peer)
                    try await volume.clearDirty()
                    try await volume.updateMetadata {
                        $0.consistency = .consistent
                        $0.generations.resyncFinishedAsTarget(sourceCurrent: sourceCurrent)
                        $0.flags.remove(.answeredWithoutPeer)  // what we answered alone was resynced over
                    }
                    if let name = attached.withLock({ $0 }) {
                        self.advance(name, .resyncDone, session: session)
                        registry.withLock { $0.statuses[name]?.resyncsCompleted += 1 }
                    }
                    logger.info("resync target finished: replica is consistent", metadata: ["volume": "\(volume.configuration.name)"])
                case .ping(let ping):
                    session.post(PeerPong(token: ping.token).encoded())
                case .pong:
                    break
                case .goodbye(let goodbye):
                    throw PeerLinkError.refused("peer said goodbye: \(goodbye.message)")
                case .supportRequest(let request):
                    // Instead of a volume: the link then carries nothing else, the asker closes it.
                    guard volume == nil, let supportPart = self.supportPart.withLock({ $0 }) else { throw PeerLinkError.unexpected("SUPPORT_REQUEST on a volume's link") }
                    logger.notice("support bundle part asked for", metadata: ["by": "\(session.connection.peerHost)", "since_s": "\(request.sinceSeconds)"])
                    // Collected beside the receive loop, which goes on answering the asker's keepalive.
                    group.addTask(executorPreference: self.ring) {
                        let part = await supportPart(request.sinceSeconds)
                        for frame in PeerSupportData.frames(for: part) { session.post(frame.encoded()) }
                    }
                default:
                    throw PeerLinkError.unexpected("\(message.frameType) on the secondary")
                }
            }
        }
    }

    /// Answers the primary's VOLUME_STATE with ours (and our bitmap when we are an incremental
    /// sync target), after making a future sync target durably Inconsistent.
    private func accept(_ peerState: PeerVolumeState, volume: LocalVolume, session: ReplicationSession) async throws {
        let local = await volume.replicaState
        let metadata = await volume.metadataSnapshot
        guard peerState.size == volume.size, peerState.grainSize == metadata.grainSize else {
            // Both sides' figures, in our log and in the goodbye: the primary's operator learns of
            // the mismatch only from it (e.g. a qcow2 image created with other options here).
            let figures = "\(peerState.size) bytes, grain \(peerState.grainSize) on the primary; \(volume.size) bytes, grain \(metadata.grainSize) on the replica"
            advance(peerState.name, .decided(.refused), session: session)
            session.post(PeerGoodbye(reason: 1, message: "volume \(peerState.name) geometry mismatch: \(figures)").encoded())
            throw PeerLinkError.refused("peer volume \(peerState.name) geometry differs from ours: \(figures)")
        }
        if metadata.flags.contains(.primary) {
            advance(peerState.name, .decided(.splitBrain), session: session)
            session.post(PeerGoodbye(reason: 2, message: "both primary").encoded())
            throw PeerLinkError.splitBrain("\(peerState.name) is primary here too")
        }
        let decision = SyncDecision.decide(local: local, peer: peerState.replicaState, localWinsTies: false)
        let target: Bool
        // Set when a split-brain policy discards this side's changes: whether only the grains of
        // both bitmaps are copied (our bitmap goes to the primary as for any incremental sync).
        var discardIncremental: Bool?
        /// What the link shows once our VOLUME_STATE is out (the primary decides the same).
        var outcome = ReplicationLinkMachine.Decision.inSync
        switch decision {
        case .noSync: target = false
        case .syncTargetIncremental, .fullSync(source: .peer): target = true
        case .splitBrain:
            // Both sides run the same resolution; the primary sends GOODBYE unless it resolves too.
            let resolution = SplitBrainResolution.resolve(
                policy: options.splitBrainPolicy, peerPolicy: peerState.splitBrainPolicy, local: local,
                peer: peerState.replicaState, localIsPrimary: false)
            if case .discardLocal(let incremental) = resolution { discardIncremental = incremental }
            target = discardIncremental != nil
            if !target { outcome = .splitBrain }
        default:
            // The primary reaches the same decision and refuses; send our state so it can say why.
            target = false
            outcome = .refused
        }
        if target { outcome = .target }
        if let incremental = discardIncremental {
            let unanswered = SplitBrainResolution.secondaryAnsweredNothing(local: local, peer: peerState.replicaState, localIsPrimary: false)
            let discard = SplitBrainDiscard(
                rule: unanswered ? "unanswered-changes" : options.splitBrainPolicy.rawValue, volume: peerState.name, bytes: local.dirtyBytes,
                grainSize: metadata.grainSize, victim: options.handshake.hostName, survivor: session.connection.peerHost,
                incremental: incremental)
            discard.log("split brain resolved: discarding this host's changes", to: logger)
            registry.withLock { $0.statuses[peerState.name]?.splitBrainResolved = discard.summary }
        }
        if target {
            // Inconsistent from now until RESYNC_DONE, carrying the source's generation: if the
            // resync breaks, the source's next generation keeps this one as its bitmap UUID and
            // the next connect resumes incrementally from the source's bitmap instead of
            // starting a full sync again. A split-brain victim's own generation goes to history.
            try await volume.updateMetadata {
                $0.consistency = .inconsistent
                if discardIncremental != nil {
                    $0.generations.discardForSplitBrain(sourceCurrent: peerState.generations.current)
                } else {
                    $0.generations.current = peerState.generations.current
                }
            }
        }
        advance(peerState.name, .decided(outcome), session: session)
        registry.withLock {
            guard $0.sessions[peerState.name] === session else { return }
            $0.statuses[peerState.name]?.peerHost = session.connection.peerHost
            $0.statuses[peerState.name]?.lastError = nil
            $0.statuses[peerState.name]?.attachments += 1
        }
        let updated = await volume.metadataSnapshot
        session.post(
            PeerVolumeState(
                volumeID: session.volumeID, volumeUUID: updated.volumeUUID, name: peerState.name, size: volume.size,
                grainSize: updated.grainSize, generations: local.generations, consistency: local.consistency,
                roles: PeerVolumeState.Roles(local.crashedPrimary ? [.crashedPrimary] : []).union(local.answeredWithoutPeer ? [.answeredWithoutPeer] : []),
                dirtyBytes: local.dirtyBytes,
                splitBrainPolicy: options.splitBrainPolicy
            ).encoded())
        if decision == .syncTargetIncremental || discardIncremental == true {
            let bitmap = await volume.dirtyBitmap().serialized()
            let chunk = 1 << 20
            var offset = 0
            repeat {
                let end = min(offset + chunk, bitmap.count)
                session.post(
                    PeerBitmap(volumeID: session.volumeID, byteOffset: UInt64(offset), totalLength: UInt64(bitmap.count), chunk: bitmap[offset..<end])
                        .encoded())
                offset = end
            } while offset < bitmap.count
        }
        logger.info("replication peer attached", metadata: ["volume": "\(peerState.name)", "peer": "\(session.connection.peerHost)", "decision": "\(decision)"])
    }

    private static func errno(_ body: @Sendable () async throws(VolumeError) -> Void) async -> UInt32 {
        do {
            try await body()
            return 0
        } catch {
            return UInt32(error.errno.rawValue)
        }
    }
}

/// Frames being applied on a secondary: bounded, and drainable for barriers (FLUSH, RESYNC_DONE).
final class InFlightTracker: Sendable {
    private struct State {
        var count = 0
        var drainers: [CheckedContinuation<Void, Never>] = []
    }

    private let semaphore: AsyncSemaphore
    private let state = Locked(State())

    init(limit: Int) { semaphore = AsyncSemaphore(limit) }

    func acquire() async {
        await semaphore.acquire()
        state.withLock { $0.count += 1 }
    }

    func release() {
        let drainers = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.count -= 1
            guard s.count == 0 else { return [] }
            defer { s.drainers = [] }
            return s.drainers
        }
        semaphore.release()
        for drainer in drainers { drainer.resume() }
    }

    func drain() async {
        await withCheckedContinuation { continuation in
            let done = state.withLock { s -> Bool in
                if s.count == 0 { return true }
                s.drainers.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }
}
