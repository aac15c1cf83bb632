import Crypto
import Foundation
import Locking
import Logging
import Sockets
import SystemCalls
import SystemPackage
import Uring
import Volume

#if canImport(Glibc)
import Glibc
#endif

/// The primary's side of one volume's replication: connects to the peer, decides from both
/// replicas' generation identifiers who syncs whom, replicates every guest change synchronously,
/// and resyncs what is out of sync while the guest keeps writing. Reconnects until cancelled.
public final class PrimaryReplication: Sendable {
    public let volume: LocalVolume
    public let peer: TCPSocket.Address
    public let options: ReplicationOptions
    let logger: Logger
    private let statusBox = Locked(ReplicationStatus())
    private let resyncRequests = Locked<[ResyncMode]>([])

    public enum ResyncMode: String, Sendable, Codable {
        /// Only what the bitmaps mark.
        case incremental
        /// Every block of the volume.
        case full
        /// Every block, but a block crosses the wire only when its SHA-256 differs on the peer.
        case checksum
        /// Online verify: compare every block by SHA-256, change nothing, mark differences dirty.
        case verify
    }

    /// How blocks travel during one resync pass.
    enum Method: String { case data, checksum, verify }

    /// Called after every change of the link's state, off the link's task: the owner's cue to
    /// look again (it publishes the change; nothing polls the link).
    /// Told each link state change, with the status as it is right after it (a resync's final
    /// figures are in it when the link leaves `syncSource`), and each resync's start.
    private let onLinkChange: @Sendable (ReplicationStatus) -> Void

    public init(
        volume: LocalVolume, peer: TCPSocket.Address, options: ReplicationOptions, logger: Logger,
        onLinkChange: @escaping @Sendable (ReplicationStatus) -> Void = { _ in }
    ) {
        self.volume = volume
        self.peer = peer
        self.options = options
        self.logger = logger
        self.onLinkChange = onLinkChange
    }

    public var status: ReplicationStatus { statusBox.withLock { $0 } }

    /// Asks for a full resync at the next opportunity (now, if connected).
    public func requestResync(_ mode: ResyncMode) {
        resyncRequests.withLock { $0.append(mode) }
    }

    /// Runs until the task is cancelled: connect, replicate, resync, and again after each failure.
    public func run() async {
        while !Task.isCancelled {
            advance(.start)
            do {
                try await connectAndReplicate()
            } catch is CancellationError {
                break
            } catch let error as PeerLinkError {
                record(error)
                if case .splitBrain = error { return }  // never resolved silently: an operator decides
            } catch let error as Errno where error == .canceled {
                break
            } catch {
                record(error)
            }
            try? await volume.ring.sleep(for: options.reconnectInterval)
        }
        advance(.stopped)
    }

    /// Every link change goes through `ReplicationLinkMachine`; an illegal one is a bug here,
    /// logged, and the state is kept.
    private func advance(_ event: ReplicationLinkMachine.Event) {
        let (refused, changed) = statusBox.withLock { s -> (String?, ReplicationStatus?) in
            do throws(ReplicationLinkMachine.TransitionError) {
                let next = try ReplicationLinkMachine.transition(from: s.link, on: event).state
                guard next != s.link else { return (nil, nil) }
                s.link = next
                return (nil, s)
            } catch {
                return (error.description, nil)
            }
        }
        if let refused { logger.error("replication link: \(refused)", metadata: ["volume": "\(volume.configuration.name)"]) }
        if let changed { onLinkChange(changed) }
    }

    private func record(_ error: any Error) {
        statusBox.withLock {
            $0.lastError = "\(error)"
        }
        advance(.failed)
        logger.warning("replication: \(error)", metadata: ["volume": "\(volume.configuration.name)", "peer": "\(peer)"])
    }

    private func connectAndReplicate() async throws {
        let connection = try await PeerConnection.connect(
            to: peer, configuration: options.handshake, ring: volume.ring, logger: logger, tcpConnected: { advance(.tcpConnected) })
        advance(.authenticated)
        let session = ReplicationSession(connection: connection, timing: options.timing, logger: logger)
        let (control, controlContinuation) = AsyncStream<PeerMessage>.makeStream()
        let attached = Locked(false)
        defer { session.fail(.closedByPeer) }
        do {
            try await replicate(over: session, connection: connection, control: control, controlContinuation: controlContinuation, attached: attached)
        } catch {
            if attached.withLock({ $0 }) { await linkLost() }
            throw error
        }
        if attached.withLock({ $0 }) { await linkLost() }
        if let failure = session.failure { throw failure }
    }

    private func replicate(
        over session: ReplicationSession, connection: PeerConnection, control: AsyncStream<PeerMessage>,
        controlContinuation: AsyncStream<PeerMessage>.Continuation, attached: Locked<Bool>
    ) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask(executorPreference: volume.ring) { await session.runSender() }
            group.addTask(executorPreference: volume.ring) { await session.runKeepalive() }
            group.addTask(executorPreference: volume.ring) {
                defer { controlContinuation.finish() }
                do {
                    try await connection.receiveMessages { message in
                        session.frameReceived()
                        switch message {
                        case .ack(let ack): session.acknowledge(sequence: ack.sequence, status: ack.status)
                        case .ping(let ping): session.post(PeerPong(token: ping.token).encoded())
                        case .pong: break
                        case .volumeState, .bitmap, .goodbye: controlContinuation.yield(message)
                        default: throw PeerLinkError.unexpected("\(message.frameType) on the primary")
                        }
                    }
                } catch {
                    session.fail(error as? PeerLinkError ?? .closedByPeer)
                }
            }
            group.addTask(executorPreference: volume.ring) {
                do {
                    try await self.replicate(session: session, control: control, attached: attached)
                } catch {
                    session.fail(error as? PeerLinkError ?? .unexpected("\(error)"))
                    throw error
                }
            }
            defer { group.cancelAll() }
            try await group.next()
            try await group.next()
        }
    }

    private func replicate(
        session: ReplicationSession, control: AsyncStream<PeerMessage>, attached: Locked<Bool>
    ) async throws {
        var messages = control.makeAsyncIterator()
        let local = await volume.replicaState
        let metadata = await volume.metadataSnapshot
        session.post(
            PeerVolumeState(
                volumeID: session.volumeID, volumeUUID: metadata.volumeUUID, name: volume.configuration.name, size: volume.size,
                grainSize: metadata.grainSize, generations: local.generations, consistency: local.consistency,
                roles: local.answeredWithoutPeer ? [.primary, .answeredWithoutPeer] : [.primary], dirtyBytes: local.dirtyBytes,
                splitBrainPolicy: options.splitBrainPolicy
            ).encoded())
        let answer = await messages.next()
        // The replica checks the geometry first and refuses a mismatch with a goodbye saying why;
        // before, this side reported only "no VOLUME_STATE from the peer".
        if case .goodbye(let goodbye) = answer { throw PeerLinkError.refused("peer said goodbye: \(goodbye.message)") }
        guard case .volumeState(let peerState) = answer else {
            throw session.failure ?? PeerLinkError.unexpected("no VOLUME_STATE from the peer")
        }
        guard peerState.name == volume.configuration.name, peerState.size == volume.size, peerState.grainSize == metadata.grainSize else {
            session.post(PeerGoodbye(reason: 1, message: "volume mismatch").encoded())
            advance(.decided(.refused))
            throw PeerLinkError.refused(
                "peer volume \(peerState.name) (\(peerState.size) bytes, grain \(peerState.grainSize)) does not match \(volume.configuration.name) (\(volume.size) bytes, grain \(metadata.grainSize))")
        }
        let decision = SyncDecision.decide(local: local, peer: peerState.replicaState, localWinsTies: true)
        logger.info(
            "replication connected", metadata: ["volume": "\(volume.configuration.name)", "peer": "\(session.connection.peerHost)", "decision": "\(decision)"])
        var resyncNeeded = false
        var fullSyncMethod = Method.data
        var mergePeerBitmap = false
        switch decision {
        case .noSync:
            break
        case .syncSourceIncremental:
            mergePeerBitmap = true
        case .fullSync(source: .local):
            await volume.markDirty(offset: 0, length: volume.size)
            resyncNeeded = true
            if options.checksumFullSync { fullSyncMethod = .checksum }
        case .splitBrain:
            let resolution = SplitBrainResolution.resolve(
                policy: options.splitBrainPolicy, peerPolicy: peerState.splitBrainPolicy, local: local,
                peer: peerState.replicaState, localIsPrimary: true)
            guard case .discardPeer(let incremental) = resolution else {
                // resolve() never discards the running primary; anything else leaves both untouched.
                let reason = if case .disconnect(let why) = resolution { why } else { "the policy chose the running primary" }
                session.post(PeerGoodbye(reason: 2, message: "split brain").encoded())
                advance(.decided(.splitBrain))
                throw PeerLinkError.splitBrain(
                    "both replicas of \(volume.configuration.name) changed since they were last in sync (local \(local.generations), peer \(peerState.generations)); not resolved: \(reason); resolve by discarding one side")
            }
            let unanswered = SplitBrainResolution.secondaryAnsweredNothing(local: local, peer: peerState.replicaState, localIsPrimary: true)
            let discard = SplitBrainDiscard(
                rule: unanswered ? "unanswered-changes" : options.splitBrainPolicy.rawValue, volume: volume.configuration.name, bytes: peerState.dirtyBytes,
                grainSize: metadata.grainSize, victim: session.connection.peerHost, survivor: options.handshake.hostName,
                incremental: incremental)
            discard.log("split brain resolved: discarding the peer's changes", to: logger)
            statusBox.withLock { $0.splitBrainResolved = discard.summary }
            if incremental {
                mergePeerBitmap = true
            } else {
                await volume.markDirty(offset: 0, length: volume.size)
                resyncNeeded = true
            }
        default:
            session.post(PeerGoodbye(reason: 3, message: "\(decision)").encoded())
            advance(.decided(.refused))
            throw PeerLinkError.refused("resync decision \(decision): the primary cannot be a sync target")
        }
        if mergePeerBitmap {
            // The peer's own out-of-sync bits (writes it made that we never saw) join ours, durably:
            // after a crash here the peer's bitmap is no longer what says which grains it changed.
            var serialized: [UInt8] = []
            while true {
                guard case .bitmap(let chunk) = await messages.next() else {
                    throw session.failure ?? PeerLinkError.unexpected("expected the peer's BITMAP")
                }
                serialized.append(contentsOf: chunk.chunk)
                if chunk.isLast { break }
            }
            try await volume.mergeDirty(DirtyBitmap(volumeSize: volume.size, grainSize: metadata.grainSize, serialized: serialized))
            try await volume.persistBitmap()
            resyncNeeded = true
        }
        // The peer answered as a sync target only after marking itself Inconsistent durably.
        await volume.peerIsSyncTarget(resyncNeeded)
        let dirty = await volume.dirtyBytes
        statusBox.withLock {
            $0.peerHost = session.connection.peerHost
            $0.lastError = nil
            $0.attachments += 1
        }
        // Attached before the decision is announced: a waiter woken by it finds the link attached.
        await volume.setReplicator(session)
        advance(.decided(resyncNeeded || dirty > 0 ? .source : .inSync))
        attached.withLock { $0 = true }
        if resyncNeeded || dirty > 0 {
            try await resync(session: session, method: fullSyncMethod)
        }
        // Connected and in sync: serve resync requests until the link fails.
        while session.failure == nil {
            if let mode = resyncRequests.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) {
                switch mode {
                case .incremental:
                    try await resync(session: session, method: .data)
                case .full, .checksum:
                    await volume.markDirty(offset: 0, length: volume.size)
                    try await resync(session: session, method: mode == .full ? .data : .checksum)
                case .verify:
                    try await resync(session: session, method: .verify)
                }
            }
            try await volume.ring.sleep(nanoseconds: 100_000_000)
        }
        throw session.failure ?? PeerLinkError.closedByPeer
    }

    /// Back to ALONE: stop replicating. The volume starts its own generation with the first
    /// change the peer misses (``LocalVolume``), not here: a planned stop with nothing written
    /// keeps the generation the peer has, and a broken resync resumes from the bitmap.
    private func linkLost() async {
        await volume.setReplicator(nil)
        try? await volume.persistBitmap()
    }

    /// Room in front of a resync block's data for its frame prefix; a page, so the data stays
    /// page-aligned for the O_DIRECT read.
    static let resyncHeadroom = 4096

    /// Sends every dirty grain, pipelined, while guest writes continue (each block is read under
    /// its range lock, so it is queued before any overlapping guest write — the peer applies them
    /// in that order). Holes travel as a marker. Progress clears bits as the peer acknowledges.
    private func resync(session: ReplicationSession, method: Method) async throws {
        var bitmap = await volume.dirtyBitmap()
        if method == .verify {
            // Verify looks at every block, whatever the bitmap says.
            bitmap.setAll()
        }
        let total = bitmap.dirtyByteCount
        let start = ContinuousClock.now
        advance(.resyncRequested)
        let started = statusBox.withLock {
            $0.resyncTotalBytes = total
            $0.resyncDoneBytes = 0
            $0.resyncSentBytes = 0
            $0.verifyMismatchBytes = 0
            $0.resyncMethod = method.rawValue
            $0.resyncsStarted += 1
            return $0
        }
        onLinkChange(started)
        logger.info("resync started", metadata: ["volume": "\(volume.configuration.name)", "bytes": "\(total)", "method": "\(method.rawValue)"])
        let chunk = UInt64(options.resyncChunkBytes)
        // The window counts bytes (in units of a fraction of a block), not blocks.
        let unitsPerBlock = ReplicationOptions.resyncUnitsPerBlock
        let unit = max(1, chunk / UInt64(unitsPerBlock))
        let window = AsyncSemaphore(options.resyncWindow * unitsPerBlock)
        let volume = self.volume, statusBox = self.statusBox
        let zero = ZeroBlock.shared
        let buffers = FrameBufferPool.forResync(
            headroom: Self.resyncHeadroom, chunk: Int(chunk), idleBlocks: options.resyncWindow, idleUnits: options.resyncWindow * unitsPerBlock)
        let failed = Locked(false)
        // Bytes read from the image (holes are not): the log's `read`, against `bytes`.
        let readBytes = Locked<UInt64>(0)
        var sinceCheckpoint: UInt64 = 0
        let rateStart = ContinuousClock.now
        var queued: UInt64 = 0
        await withDiscardingTaskGroup { group in
            for run in bitmap.runs {
                var offset = run.offset
                while offset < run.offset + run.length {
                    if session.failure != nil || failed.withLock({ $0 }) { return }
                    if method == .data {
                        // A hole is neither read nor sent as data: a zeroes frame covers up to
                        // 32 MiB of it (the protocol's largest range), and the peer punches it.
                        await window.acquire()
                        let holeOffset = offset
                        let most = min(run.offset + run.length - offset, UInt64(PeerProtocol.maximumDataLength))
                        let hole = (try? await volume.resyncHole(offset: offset, maxLength: most) { length in
                            (length, session.request { sequence in
                                OutboundFrame(
                                    PeerResyncData(
                                        volumeID: session.volumeID, requestID: sequence, offset: holeOffset, content: .zeroes(length: UInt32(length))
                                    ).encoded())
                            })
                        }) ?? nil
                        if let (holeLength, ticket) = hole {
                            group.addTask(executorPreference: volume.ring) {
                                defer { window.release() }
                                guard let ticket, await ticket.wait() else {
                                    failed.withLock { $0 = true }
                                    return
                                }
                                await volume.clearDirty(offset: holeOffset, length: holeLength)
                                statusBox.withLock {
                                    $0.resyncDoneBytes += holeLength
                                    $0.resyncSentBytes += 16
                                }
                            }
                            offset += holeLength
                            sinceCheckpoint += holeLength
                            continue
                        }
                        window.release()
                    }
                    let length = min(chunk - offset % chunk, run.offset + run.length - offset)
                    let units = Int((length + unit - 1) / unit)
                    for _ in 0..<units { await window.acquire() }
                    if let maxRate = options.resyncMaxRate {
                        // Keep the average at or under the maximum: sleep while ahead of it.
                        let allowed = Double(maxRate) * (ContinuousClock.now - rateStart).seconds
                        if Double(queued) > allowed {
                            try? await volume.ring.sleep(nanoseconds: UInt64((Double(queued) - allowed) / Double(maxRate) * 1e9))
                        }
                    }
                    queued += length
                    let pieceOffset = offset
                    group.addTask(executorPreference: volume.ring) {
                        defer { for _ in 0..<units { window.release() } }
                        do {
                            var sent = 0
                            if method != .data {
                                // Digest first; the data follows only when the peer's block differs.
                                // A block that is all hole here has the digest of zeroes, unread.
                                @Sendable func request(_ digest: [UInt8]) -> ReplicationTicket? {
                                    session.request { sequence in
                                        OutboundFrame(
                                            PeerResyncChecksum(
                                                volumeID: session.volumeID, requestID: sequence, offset: pieceOffset,
                                                length: UInt32(length), digest: .sha256(digest)
                                            ).encoded())
                                    }
                                }
                                let ticket: ReplicationTicket?
                                if let unread = try await volume.resyncHole(offset: pieceOffset, maxLength: length, deliver: { hole in
                                    hole == length ? request(ZeroDigest.sha256(length: Int(length))) : nil
                                }), let unread {
                                    ticket = unread
                                } else {
                                    ticket = try await volume.readForResync(offset: pieceOffset, length: Int(length)) { bytes in
                                        request(Array(SHA256.hash(data: bytes)))
                                    }
                                    readBytes.withLock { $0 += length }
                                }
                                guard let ticket, let status = await ticket.status() else { throw PeerLinkError.closedByPeer }
                                sent += 64
                                if status == PeerAck.checksumMismatch {
                                    if method == .verify {
                                        await volume.markDirty(offset: pieceOffset, length: length)
                                        statusBox.withLock { $0.verifyMismatchBytes += length }
                                        statusBox.withLock { $0.resyncDoneBytes += length }
                                        return
                                    }
                                } else if status == 0 {
                                    if method == .checksum { await volume.clearDirty(offset: pieceOffset, length: length) }
                                    statusBox.withLock {
                                        $0.resyncDoneBytes += length
                                        $0.resyncSentBytes += UInt64(sent)
                                    }
                                    return
                                } else {
                                    throw PeerLinkError.refused("peer failed a checksum request: errno \(status)")
                                }
                            }
                            // The block is read straight into a pooled frame, behind room for its
                            // prefix, and goes to the socket from there: no copy, no fresh pages.
                            let frame = OutboundFrame(
                                pooled: buffers.take(atLeast: Self.resyncHeadroom + Int(length)),
                                range: (Self.resyncHeadroom - PeerResyncData.prefixSize)..<(Self.resyncHeadroom + Int(length)), pool: buffers)
                            let data = UnsafeMutableRawBufferPointer(rebasing: frame.bytes[PeerResyncData.prefixSize...])
                            let (ticket, holes) = try await volume.readForResync(offset: pieceOffset, into: data) { bytes in
                                let holes = zero.isZero(bytes)
                                let ticket = session.request { sequence in
                                    if holes {
                                        return OutboundFrame(
                                            PeerResyncData(
                                                volumeID: session.volumeID, requestID: sequence, offset: pieceOffset,
                                                content: .zeroes(length: UInt32(bytes.count))
                                            ).encoded())
                                    }
                                    var prefix: [UInt8] = []
                                    PeerResyncData.encodePrefix(
                                        into: &prefix, volumeID: session.volumeID, requestID: sequence, offset: pieceOffset, dataLength: bytes.count)
                                    UnsafeMutableRawBufferPointer(rebasing: frame.bytes[0..<PeerResyncData.prefixSize]).copyBytes(from: prefix)
                                    return frame
                                }
                                return (ticket, holes)
                            }
                            readBytes.withLock { $0 += length }
                            let dataSent = holes ? 16 : Int(length)
                            guard let ticket, await ticket.wait() else { throw PeerLinkError.closedByPeer }
                            sent += dataSent
                            await volume.clearDirty(offset: pieceOffset, length: length)
                            statusBox.withLock {
                                $0.resyncDoneBytes += length
                                $0.resyncSentBytes += UInt64(sent)
                            }
                        } catch {
                            failed.withLock { $0 = true }
                        }
                    }
                    offset += length
                    sinceCheckpoint += length
                    if sinceCheckpoint >= 256 << 20 {
                        // A crash from here resumes near this point, not from the start.
                        sinceCheckpoint = 0
                        try? await volume.persistBitmap()
                    }
                }
            }
        }
        if let failure = session.failure { throw failure }
        if failed.withLock({ $0 }) { throw PeerLinkError.unexpected("resync block failed") }
        if method == .verify {
            let mismatched = statusBox.withLock { s -> UInt64 in
                s.resyncsCompleted += 1
                return s.verifyMismatchBytes
            }
            advance(.resyncDone)
            logger.info("verify finished", metadata: ["volume": "\(volume.configuration.name)", "mismatch_bytes": "\(mismatched)"])
            return
        }
        // RESYNC_DONE, then a FLUSH barrier: once it is acknowledged the peer has every block
        // durably and has marked itself consistent. From here a change it misses must wait again.
        await volume.peerIsSyncTarget(false)
        session.post(PeerResyncDone(volumeID: session.volumeID, bytesSynced: total).encoded())
        guard let flush = session.submit(.flush), await flush.wait() else { throw session.failure ?? PeerLinkError.closedByPeer }
        try await volume.updateMetadata {
            $0.generations.resyncFinishedAsSource()
            $0.flags.remove(.answeredWithoutPeer)  // the peer has every write we answered
        }
        try await volume.persistBitmap()
        let seconds = (ContinuousClock.now - start).seconds
        statusBox.withLock {
            $0.resyncSeconds = seconds
            $0.resyncsCompleted += 1
        }
        advance(.resyncDone)
        logger.info(
            "resync finished",
            metadata: ["volume": "\(volume.configuration.name)", "bytes": "\(total)", "seconds": "\(seconds)", "method": "\(method.rawValue)",
                       "sent": "\(statusBox.withLock { $0.resyncSentBytes })", "read": "\(readBytes.withLock { $0 })"])
    }
}


/// The SHA-256 of `length` zero bytes, computed once per length: the digest of a hole, which
/// the checksum and verify passes send (source) and compare (target) without reading it.
enum ZeroDigest {
    private static let cache = Locked<[Int: [UInt8]]>([:])

    static func sha256(length: Int) -> [UInt8] {
        if let known = cache.withLock({ $0[length] }) { return known }
        var hasher = SHA256()
        let zeroes = UnsafeRawBufferPointer(start: ZeroBlock.shared.bytes.baseAddress, count: ZeroBlock.shared.bytes.count)
        var left = length
        while left > 0 {
            let n = min(left, zeroes.count)
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: zeroes[0..<n]))
            left -= n
        }
        let digest = Array(hasher.finalize())
        cache.withLock { $0[length] = digest }
        return digest
    }
}

/// A page of zeroes to recognise holes quickly (memcmp, not a byte loop).
final class ZeroBlock: @unchecked Sendable {  // immutable after init
    static let shared = ZeroBlock()
    private let zeroes: UnsafeMutableRawBufferPointer
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(zeroes) }

    private init() {
        zeroes = .allocate(byteCount: 1 << 20, alignment: 4096)
        zeroes.initializeMemory(as: UInt8.self, repeating: 0)
    }

    func isZero(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = min(zeroes.count, bytes.count - offset)
            if memcmp(bytes.baseAddress! + offset, zeroes.baseAddress!, n) != 0 { return false }
            offset += n
        }
        return true
    }
}
