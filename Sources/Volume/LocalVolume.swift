import Foundation
import Logging
import ReplicationPolicy
import SystemCalls
import SystemPackage
import Uring

#if canImport(Glibc)
import Glibc
#endif

/// The host-local half of a replicated volume: the image file, its metadata file (superblock,
/// activity log ring, dirty bitmap) and the write path that keeps them consistent.
///
/// The actor runs on its ring's owner thread (the ring is its executor), so the bitmap and the
/// activity log are touched without locks on the thread that submits the I/O.
///
/// Crash safety (DRBD's scheme): before a write touches a cold extent, the extent is made hot by a
/// durable activity-log transaction; bitmap bits of an extent reach the disk before the extent
/// leaves the log. After an unclean stop the newest transaction's extents are merged into the
/// on-disk bitmap, which therefore covers every write that may have been in flight.
public actor LocalVolume {
    public struct Configuration: Sendable {
        /// The NBD export name.
        public var name: String
        public var imagePath: String
        public var metadataPath: String
        public var grainSize: UInt64 = DirtyBitmap.defaultGrainSize
        public var activityLog: ActivityLog.Configuration = .default
        public var clusterUUID: UUID = UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
        /// How a volume without a metadata file starts: as the primary its image is the data
        /// (consistent, a fresh generation); as a secondary it waits for a full sync
        /// (inconsistent, generation 0 — DRBD's "just created").
        public var initialRole: VolumeMetadata.Role = .primary
        /// The labels of this volume's metrics (`vmha_volume_*`); default: its name as `volume`.
        public var metricsDimensions: [(String, String)]

        public init(name: String, imagePath: String, metadataPath: String) {
            self.name = name
            self.imagePath = imagePath
            self.metadataPath = metadataPath
            self.metricsDimensions = [("volume", name)]
        }
    }

    /// What opening the volume found.
    public struct OpenReport: Sendable {
        public var createdMetadata: Bool
        public var uncleanShutdown: Bool
        public var recoveredExtents: Int
        public var dirtyBytes: UInt64
        /// The volume was primary when it stopped uncleanly: writes it made may be missing on
        /// the peer (the resync decision's "crashed primary").
        public var crashedPrimary = false
    }

    /// O_DIRECT needs offsets, lengths and buffers aligned to the logical block size; 4 KiB is safe.
    public static let directAlignment = 4096

    public nonisolated let configuration: Configuration
    public nonisolated let ring: IOUring
    public nonisolated let format: ImageFormat
    public nonisolated let size: UInt64
    public nonisolated let openReport: OpenReport
    public nonisolated var unownedExecutor: UnownedSerialExecutor { ring.asUnownedSerialExecutor() }

    private let directFD: FileDescriptor
    private let bufferedFD: FileDescriptor
    private let metadataFD: FileDescriptor
    private let logger: Logger
    private let metrics: VolumeMetrics
    private var metadata: VolumeMetadata
    private var bitmap: DirtyBitmap
    private var activityLog: ActivityLog
    /// One write at a time activates extents (FIFO); the others wait their turn. Writes that
    /// wait for room while all hot extents are busy wait for a release.
    private var activating = false
    private var activationQueue: [CheckedContinuation<Void, Never>] = []
    private var releaseWaiters: [CheckedContinuation<Void, Never>] = []
    private var metadataFailure: Errno?
    private var closed = false

    /// The peer link while replicating (protocol C). Without one, every write, trim and
    /// zero-range sets its bits in the dirty bitmap; with one, only changes the peer did not
    /// acknowledge do.
    private var replicator: (any WriteReplicator)?
    /// Guest changes still in flight, by the replicator attachment they began under.
    private var replicatorEpoch: UInt64 = 0
    private var settling: [UInt64: Int] = [:]
    private var settleWaiters: [CheckedContinuation<Void, Never>] = []
    private var unreplicatedPolicy = UnreplicatedWritePolicy.complete
    private var peerDurablyOutOfSync = false
    private var heldWrites: [CheckedContinuation<Void, Never>] = []
    private var guestChanges = GuestChangeGate.open
    private var rangeLocks = RangeLocks()
    /// Whether this volume already started its own generation since it last replicated (DRBD's
    /// rule: the first change the peer does not get starts a new current generation, so two
    /// sides that both changed while apart can never look like one history).
    private var ownGenerationStarted = false

    /// Who asked for a change: the guest (replicated, tracked) or the peer (applied as is).
    public enum Origin: Sendable { case guest, peer }

    /// Whether guest changes (write, trim, zero-range, flush) may run. A secondary exported to an
    /// incoming live migration's QEMU holds them — not applied, not answered — until it is
    /// promoted (`.open`) or the migration is abandoned (`.refused`: they fail with EIO).
    public enum GuestChangeGate: Sendable { case open, held, refused }

    public var dirtyBytes: UInt64 { bitmap.dirtyByteCount }

    /// Guest writes completed since open and their summed completion time (local and peer):
    /// the console charts the mean latency between two reads of these.
    public private(set) var guestWrites: (count: UInt64, seconds: Double) = (0, 0)
    public var generations: GenerationIdentifiers { metadata.generations }
    public var hotExtents: Int { activityLog.hotCount }

    // MARK: Open and close

    /// Opens the image and its metadata, creating the metadata file when it does not exist.
    /// An existing metadata file that is corrupt, foreign or for another geometry is refused.
    public static func open(
        _ configuration: Configuration, ring: IOUring, logger: Logger
    ) async throws(VolumeError) -> LocalVolume {
        let image = configuration.imagePath
        var st = stat()
        do {
            try Syscall.call("stat") { stat(image, &st) }
        } catch {
            if error.errno == .noSuchFileOrDirectory { throw .imageMissing(path: image) }
            throw .io(path: image, error.errno)
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw .imageUnusable(path: image, reason: "not a regular file") }
        let direct: FileDescriptor, buffered: FileDescriptor
        do {
            direct = try FileDescriptor.open(image, .readWrite, options: [.direct, .closeOnExec])
            buffered = try FileDescriptor.open(image, .readWrite, options: [.closeOnExec])
        } catch {
            throw .io(path: image, ioErrno(error))
        }
        do {
            var header = [UInt8](repeating: 0, count: 512)
            let n = try header.withUnsafeMutableBytes { try buffered.read(fromAbsoluteOffset: 0, into: $0) }
            header = Array(header[0..<n])
            let format = ImageFormat.detect(header: header)
            var size = UInt64(st.st_size)
            if format == .qcow2 {
                do {
                    size = try ImageFormat.qcow2ExportSize(header: header, fileSize: size)
                } catch {
                    throw VolumeError.imageUnusable(path: image, reason: "\(error)")
                }
                if size > UInt64(st.st_size) {
                    try Syscall.call("ftruncate") { ftruncate(buffered.rawValue, off_t(size)) }
                }
            }
            guard size > 0, size % 512 == 0 else {
                throw VolumeError.imageUnusable(path: image, reason: "size \(size) is not a positive multiple of 512")
            }
            // Pages of the image still cached (from whatever wrote it last, e.g. `qemu-img convert`)
            // would push every O_DIRECT write over them to io_uring's worker threads: the kernel
            // must drop them first and cannot without blocking. Write them back and drop them once.
            try Syscall.call("fdatasync") { fdatasync(buffered.rawValue) }
            try Syscall.callReturningErrorNumber("posix_fadvise") { posix_fadvise(buffered.rawValue, 0, 0, POSIX_FADV_DONTNEED) }
            let (metadataFD, metadata, bitmap, activityLog, report) = try await openMetadata(
                configuration, size: size, ring: ring, logger: logger)
            return LocalVolume(
                configuration: configuration, ring: ring, format: format, size: size, directFD: direct,
                bufferedFD: buffered, metadataFD: metadataFD, metadata: metadata, bitmap: bitmap,
                activityLog: activityLog, report: report, logger: logger)
        } catch let error as VolumeError {
            try? direct.close()
            try? buffered.close()
            throw error
        } catch {
            try? direct.close()
            try? buffered.close()
            throw .io(path: image, ioErrno(error))
        }
    }

    private init(
        configuration: Configuration, ring: IOUring, format: ImageFormat, size: UInt64,
        directFD: FileDescriptor, bufferedFD: FileDescriptor, metadataFD: FileDescriptor,
        metadata: VolumeMetadata, bitmap: DirtyBitmap, activityLog: ActivityLog, report: OpenReport, logger: Logger
    ) {
        self.configuration = configuration
        self.ring = ring
        self.format = format
        self.size = size
        self.directFD = directFD
        self.bufferedFD = bufferedFD
        self.metadataFD = metadataFD
        self.metadata = metadata
        self.bitmap = bitmap
        self.activityLog = activityLog
        self.openReport = report
        self.logger = logger
        self.metrics = VolumeMetrics(dimensions: configuration.metricsDimensions)
    }

    private static func openMetadata(
        _ configuration: Configuration, size: UInt64, ring: IOUring, logger: Logger
    ) async throws(VolumeError) -> (FileDescriptor, VolumeMetadata, DirtyBitmap, ActivityLog, OpenReport) {
        let path = configuration.metadataPath
        let exists = (try? Syscall.call("access") { access(path, F_OK) }) != nil
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(
                path, .readWrite, options: exists ? [.closeOnExec] : [.create, .exclusiveCreate, .closeOnExec],
                permissions: [.ownerReadWrite])
        } catch {
            throw .metadataIO(path: path, ioErrno(error))
        }
        do {
            var metadata: VolumeMetadata
            var bitmap: DirtyBitmap
            var report = OpenReport(createdMetadata: !exists, uncleanShutdown: false, recoveredExtents: 0, dirtyBytes: 0)
            var recovery: ActivityLogRecovery?
            if exists {
                let superblocks = try readBytes(fd, at: 0, count: 8192, path: path)
                do {
                    metadata = try VolumeMetadata.decode(
                        superblocks: superblocks, volumeSize: size, grainSize: configuration.grainSize
                    ).metadata
                } catch {
                    throw VolumeError.metadata(path: path, error)
                }
                let layout = metadata.layout
                let bitmapBytes = try readBytes(
                    fd, at: layout.bitmapOffset, count: Int(layout.bitmapUsedLength), path: path)
                do {
                    bitmap = try DirtyBitmap(volumeSize: size, grainSize: metadata.grainSize, serialized: bitmapBytes)
                } catch {
                    throw VolumeError.metadata(path: path, .invalidConfiguration("bitmap: \(error)"))
                }
                let ring = try readBytes(fd, at: layout.activityLogOffset, count: Int(layout.activityLogLength), path: path)
                let recovered = ActivityLogRecovery(
                    ring: ring, slotCount: metadata.activityLog.slotCount, volumeTag: metadata.activityLogTag,
                    extentSize: metadata.activityLog.extentSize)
                report.uncleanShutdown = metadata.flags.contains(.crashedPrimary)
                report.crashedPrimary = report.uncleanShutdown && metadata.flags.contains(.primary)
                if !recovered.extents.isEmpty && metadata.flags.contains(.primary) {
                    // Extents still hot on disk: guest writes may have been in flight there. (A
                    // secondary acknowledges only completed writes; what it missed, the
                    // primary's bitmap holds.)
                    recovered.markDirty(in: &bitmap)
                    report.recoveredExtents = recovered.extents.count
                }
                recovery = recovered
            } else {
                do {
                    var generations = GenerationIdentifiers()
                    if configuration.initialRole == .primary {
                        generations.startNewGeneration(.random(in: 1...UInt64.max), origin: .promotion)
                    }
                    metadata = try VolumeMetadata(
                        volumeUUID: UUID(), clusterUUID: configuration.clusterUUID, volumeSize: size,
                        grainSize: configuration.grainSize, activityLog: configuration.activityLog,
                        generations: generations, flags: configuration.initialRole == .primary ? [.primary] : [],
                        consistency: configuration.initialRole == .primary ? .consistent : .inconsistent)
                    bitmap = try DirtyBitmap(volumeSize: size, grainSize: configuration.grainSize)
                } catch {
                    throw VolumeError.imageUnusable(path: configuration.imagePath, reason: "\(error)")
                }
                try Syscall.call("ftruncate") { ftruncate(fd.rawValue, off_t(metadata.layout.fileSize)) }
            }
            let activityLog: ActivityLog
            do {
                activityLog = try ActivityLog(
                    configuration: metadata.activityLog, volumeSize: size, volumeTag: metadata.activityLogTag,
                    recovery: recovery)
            } catch {
                throw VolumeError.metadata(path: path, .invalidConfiguration("activity log: \(error)"))
            }
            // The recovered bits go to disk before anything else: the next crash must still see them.
            try writeBytes(fd, bitmap.serialized(), at: metadata.layout.bitmapOffset, path: path)
            // From now until a clean close, a crash is an unclean shutdown.
            metadata.flags.insert(.crashedPrimary)
            for _ in 0..<(exists ? 1 : 2) {
                let (offset, bytes) = metadata.nextSuperblockWrite()
                try writeBytes(fd, bytes, at: offset, path: path)
            }
            try Syscall.call("fdatasync") { fdatasync(fd.rawValue) }
            report.dirtyBytes = bitmap.dirtyByteCount
            logger.info(
                "volume opened",
                metadata: [
                    "volume": "\(configuration.name)", "size": "\(size)", "created": "\(report.createdMetadata)",
                    "unclean": "\(report.uncleanShutdown)", "recovered_extents": "\(report.recoveredExtents)",
                    "dirty_bytes": "\(report.dirtyBytes)",
                ])
            return (fd, metadata, bitmap, activityLog, report)
        } catch let error as VolumeError {
            try? fd.close()
            throw error
        } catch {
            try? fd.close()
            throw .metadataIO(path: path, ioErrno(error))
        }
    }

    /// The errno of a failed swift-system call (`Errno`) or `Syscall` (`SystemCallError`).
    private static func ioErrno(_ error: any Error) -> Errno {
        (error as? SystemCallError)?.errno ?? error as? Errno ?? .ioError
    }

    private static func readBytes(_ fd: FileDescriptor, at offset: UInt64, count: Int, path: String) throws(VolumeError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        do {
            let n = try bytes.withUnsafeMutableBytes { try fd.read(fromAbsoluteOffset: Int64(offset), into: $0) }
            guard n == count else {
                throw VolumeError.metadata(path: path, .corrupt("file is shorter than its layout (\(offset + UInt64(n)) bytes)"))
            }
        } catch let error as VolumeError {
            throw error
        } catch {
            throw .metadataIO(path: path, ioErrno(error))
        }
        return bytes
    }

    private static func writeBytes(_ fd: FileDescriptor, _ bytes: [UInt8], at offset: UInt64, path: String) throws(VolumeError) {
        do {
            _ = try bytes.withUnsafeBytes { try fd.writeAll(toAbsoluteOffset: Int64(offset), $0) }
        } catch {
            throw .metadataIO(path: path, ioErrno(error))
        }
    }

    /// Clean close: persists the whole bitmap, empties the activity log, clears the unclean flag.
    public func close() async throws(VolumeError) {
        guard !closed else { return }
        closed = true
        wakeHeldWrites()
        let path = configuration.metadataPath
        defer {
            try? directFD.close()
            try? bufferedFD.close()
            try? metadataFD.close()
        }
        while activating { await withCheckedContinuation { activationQueue.append($0) } }
        if let failure = metadataFailure { throw .metadataIO(path: path, failure) }
        try await writeMetadata(bitmap.serialized(), at: metadata.layout.bitmapOffset)
        if let transaction = activityLog.makeQuiesceTransaction() {
            try await writeMetadata(
                transaction.bytes, at: metadata.layout.activityLogSlotOffset(transaction.slot), durable: true)
            do { try activityLog.transactionDidComplete(sequence: transaction.sequence) } catch {
                throw .metadataIO(path: path, .ioError)
            }
        }
        metadata.flags.remove(.crashedPrimary)
        let (offset, bytes) = metadata.nextSuperblockWrite()
        try await writeMetadata(bytes, at: offset, durable: true)
        logger.info("volume closed cleanly", metadata: ["volume": "\(configuration.name)", "dirty_bytes": "\(bitmap.dirtyByteCount)"])
    }

    // MARK: Data path

    /// Reads `buffer.count` bytes at `offset`; the buffer must be 4 KiB aligned.
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) async throws(VolumeError) {
        try check(offset: offset, length: UInt64(buffer.count))
        let handle = handle(offset: offset, length: buffer.count, address: UnsafeRawPointer(buffer.baseAddress!))
        do {
            let n = try await ring.readFully(handle, into: buffer, at: offset)
            // Past the end of a qcow2 container's file: the sparse tail reads as zeroes.
            if n < buffer.count { UnsafeMutableRawBufferPointer(rebasing: buffer[n...]).initializeMemory(as: UInt8.self, repeating: 0) }
        } catch {
            throw .io(path: configuration.imagePath, error)
        }
    }

    /// Writes `data` at `offset`; `fua` makes it durable before returning.
    public func write(
        _ data: UnsafeRawBufferPointer, at offset: UInt64, fua: Bool, origin: Origin = .guest
    ) async throws(VolumeError) {
        let started = origin == .guest ? ContinuousClock.now : nil
        defer {
            if let started {
                metrics.writes.increment()
                metrics.writtenBytes.increment(by: data.count)
                let elapsed = started.duration(to: .now)
                metrics.writeLatency.record(duration: elapsed)
                guestWrites.count += 1
                guestWrites.seconds += Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
            }
        }
        try await modify(offset: offset, length: UInt64(data.count), origin: origin) { position, piece in
            let slice = UnsafeRawBufferPointer(rebasing: data[Int(position - offset)..<Int(position - offset + piece)])
            return .write(offset: position, data: slice, fua: fua)
        } body: { (position, piece) async throws(Errno) in
            let slice = UnsafeRawBufferPointer(rebasing: data[Int(position - offset)..<Int(position - offset + piece)])
            let handle = self.handle(offset: position, length: slice.count, address: slice.baseAddress!)
            try await self.ring.writeFully(handle, from: slice, at: position, durable: fua)
        }
    }

    /// Deallocates a range (NBD TRIM): it reads back as zeroes.
    public func trim(offset: UInt64, length: UInt64, origin: Origin = .guest) async throws(VolumeError) {
        try await modify(offset: offset, length: length, origin: origin) { position, piece in
            .trim(offset: position, length: piece)
        } body: { (offset, length) async throws(Errno) in
            try await self.ring.punchHole(.file(self.bufferedFD), offset: offset, length: length)
        }
    }

    /// Zeroes a range (NBD WRITE_ZEROES); `allocate` keeps it allocated (NBD_CMD_FLAG_NO_HOLE).
    public func writeZeroes(
        offset: UInt64, length: UInt64, allocate: Bool, fua: Bool, origin: Origin = .guest
    ) async throws(VolumeError) {
        try await modify(offset: offset, length: length, origin: origin) { position, piece in
            .writeZeroes(offset: position, length: piece, allocate: allocate)
        } body: { (offset, length) async throws(Errno) in
            if allocate {
                try await self.ring.zeroRange(.file(self.bufferedFD), offset: offset, length: length)
            } else {
                try await self.ring.punchHole(.file(self.bufferedFD), offset: offset, length: length)
            }
            if fua { try await self.ring.fsync(.file(self.bufferedFD), dataOnly: true) }
        }
    }

    /// Makes every completed write durable (NBD FLUSH), on the peer too while replicating.
    public func flush(origin: Origin = .guest) async throws(VolumeError) {
        if origin == .guest { try await passGuestChangeGate() }
        let ticket = origin == .guest ? replicator?.submit(.flush) : nil
        do {
            try await ring.fsync(.file(directFD), dataOnly: true)
        } catch {
            throw .io(path: configuration.imagePath, error)
        }
        // A flush the peer missed needs no bits: the writes it covers are tracked themselves.
        if let ticket { _ = await ticket.wait() }
    }

    /// A copy of the dirty bitmap (for resync and for tests).
    public func dirtyBitmap() -> DirtyBitmap { bitmap }

    // MARK: Replication hooks

    /// Starts (or, with nil, stops) replicating guest changes to the peer.
    ///
    /// Attaching returns only once every guest change that began before it has settled (set its
    /// dirty bits if the peer missed it): a change that found no replicator, or a failed one,
    /// may otherwise mark its range *after* the caller took the bitmap for the resync that follows,
    /// and the peer would be called UpToDate without it.
    public func setReplicator(_ replicator: (any WriteReplicator)?) async {
        self.replicator = replicator
        guard replicator != nil else { return }
        ownGenerationStarted = false
        replicatorEpoch += 1
        let attached = replicatorEpoch
        while settling.contains(where: { $0.key < attached }) {
            await withCheckedContinuation { settleWaiters.append($0) }
        }
    }

    private func beginSettling() -> UInt64 {
        settling[replicatorEpoch, default: 0] += 1
        return replicatorEpoch
    }

    private func endSettling(_ epoch: UInt64) {
        settling[epoch, default: 1] -= 1
        if settling[epoch] == 0 { settling[epoch] = nil }
        let waiters = settleWaiters
        settleWaiters = []
        for waiter in waiters { waiter.resume() }
    }

    /// Becomes primary. A former secondary starts a new generation at once (DRBD's rule for a
    /// promotion without the peer): its history now differs from the old primary's, so if both
    /// write, the next connect reports split brain instead of overwriting one of them.
    public func promote() async throws(VolumeError) {
        let wasPrimary = metadata.flags.contains(.primary)
        try await updateMetadata {
            if !wasPrimary { $0.generations.startNewGeneration(.random(in: 1...UInt64.max), origin: .promotion) }
            $0.flags.insert([.primary, .wasPrimary])
        }
        if !wasPrimary { ownGenerationStarted = true }
    }

    /// Becomes secondary (the peer will be primary).
    public func demote() async throws(VolumeError) {
        try await updateMetadata { $0.flags.remove(.primary) }
    }

    /// Before the first answer of a guest write the peer misses: a generation of our own (unless
    /// this primary period began with one), and the answered-without-peer flag, both durable.
    private func startOwnGenerationIfNeeded() async {
        guard !ownGenerationStarted || !metadata.flags.contains(.answeredWithoutPeer) else { return }
        let newGeneration = !ownGenerationStarted
        ownGenerationStarted = true
        // Only a primary's guest writes get here: it lost (or never had) its peer while primary.
        try? await updateMetadata {
            if newGeneration { $0.generations.startNewGeneration(.random(in: 1...UInt64.max), origin: .continuedAsPrimary) }
            $0.flags.insert(.answeredWithoutPeer)
        }
    }

    public var isReplicating: Bool { replicator != nil }

    /// This replica's state for the resync decision at connect time.
    public var replicaState: ReplicaState {
        ReplicaState(
            generations: metadata.generations, crashedPrimary: openReport.crashedPrimary,
            consistency: metadata.consistency, dirtyBytes: bitmap.dirtyByteCount,
            answeredWithoutPeer: metadata.flags.contains(.answeredWithoutPeer))
    }

    public var metadataSnapshot: VolumeMetadata { metadata }

    /// Changes the superblock (generations, role, consistency) and writes it durably.
    public func updateMetadata(_ change: (inout VolumeMetadata) -> Void) async throws(VolumeError) {
        change(&metadata)
        let (offset, bytes) = metadata.nextSuperblockWrite()
        try await writeMetadata(bytes, at: offset, durable: true)
    }

    /// Marks a range out of sync (verify found a difference, or the peer reported one).
    public func markDirty(offset: UInt64, length: UInt64) {
        try? bitmap.set(offset: offset, length: length)
    }

    /// Marks a range in sync again (resync of it was acknowledged by the peer).
    public func clearDirty(offset: UInt64, length: UInt64) {
        try? bitmap.clear(offset: offset, length: length)
        if !heldWrites.isEmpty { wakeHeldWrites() }
    }

    /// Replaces the bitmap with `other`'s bits added (the peer's bitmap at connect time).
    public func mergeDirty(_ other: DirtyBitmap) throws(VolumeError) {
        do { try bitmap.formUnion(other) } catch {
            throw .metadata(path: configuration.metadataPath, .invalidConfiguration("peer bitmap: \(error)"))
        }
    }

    /// Writes the whole bitmap to the metadata file (resync checkpoints, sync points).
    public func persistBitmap() async throws(VolumeError) {
        try await writeMetadata(bitmap.serialized(), at: metadata.layout.bitmapOffset, durable: true)
        metrics.bitmapWrites.increment()
    }

    /// Records a sync point: the replicas agree, nothing is dirty.
    public func clearDirty() async throws(VolumeError) {
        bitmap.clearAll()
        wakeHeldWrites()
        try await persistBitmap()
    }

    /// Reads a range while holding its range lock and hands the bytes to `deliver` before the
    /// lock is released: a resync block is queued for the peer ahead of any guest write that
    /// overlaps it, so on the peer's ordered stream it can never land after that write.
    public func readForResync<T: Sendable>(
        offset: UInt64, length: Int, deliver: @Sendable (UnsafeRawBufferPointer) -> T
    ) async throws(VolumeError) -> T {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: length, alignment: 4096)
        defer { buffer.deallocate() }
        return try await readForResync(offset: offset, into: buffer, deliver: deliver)
    }

    /// ``readForResync(offset:length:deliver:)`` into the caller's buffer (page-aligned for
    /// O_DIRECT), e.g. one that already has room for a frame header in front.
    public func readForResync<T: Sendable>(
        offset: UInt64, into buffer: UnsafeMutableRawBufferPointer, deliver: @Sendable (UnsafeRawBufferPointer) -> T
    ) async throws(VolumeError) -> T {
        try check(offset: offset, length: UInt64(buffer.count))
        await lockRange(offset, offset + UInt64(buffer.count))
        defer { unlockRange(offset, offset + UInt64(buffer.count)) }
        try await read(into: buffer, at: offset)
        return deliver(UnsafeRawBufferPointer(buffer))
    }

    /// For the resync: if the image holds no data at `offset` (a hole, per `SEEK_DATA`), the
    /// hole's length from there (at most `maxLength`), handed to `deliver` while the range is
    /// locked — so that what `deliver` queues (a zeroes frame) goes out before any later guest
    /// change to that range; nil where there is data. Nothing is read. Only whole grains of the
    /// dirty bitmap count (a grain is cleared only when all of it was sent, so a 4 KiB hole
    /// inside a grain of data is sent with the data, else the grain would stay dirty for ever).
    public func resyncHole<T: Sendable>(
        offset: UInt64, maxLength: UInt64, deliver: @Sendable (UInt64) -> T
    ) async throws(VolumeError) -> T? {
        let length = min(maxLength, size - min(offset, size))
        try check(offset: offset, length: length)
        guard length > 0 else { return nil }
        await lockRange(offset, offset + length)
        defer { unlockRange(offset, offset + length) }
        let data: UInt64
        do {
            data = try Self.nextData(bufferedFD, from: offset) ?? size
        } catch {
            throw .io(path: configuration.imagePath, error.errno)
        }
        let grain = bitmap.grainSize
        guard offset % grain == 0 else { return nil }
        let hole = (min(data, offset + length) - offset) / grain * grain
        // The volume's partial last grain: the hole may run to its end.
        let whole = data >= size && offset + length == size ? size - offset : hole
        guard whole > 0 else { return nil }
        return deliver(whole)
    }

    /// The allocation of [offset, offset + length) as extents (in order, covering it from the
    /// start; at most `maxCount`, so possibly not to the end): holes by `SEEK_DATA` and
    /// `SEEK_HOLE`, which read as zeroes; beyond the file's end (a qcow2 container's sparse tail)
    /// a hole. For NBD block status and structured reads.
    public func allocation(offset: UInt64, length: UInt64, maxCount: Int) throws(VolumeError) -> [(length: UInt64, hole: Bool)] {
        try check(offset: offset, length: length)
        var extents: [(length: UInt64, hole: Bool)] = []
        var position = offset
        let end = offset + length
        do {
            while position < end, extents.count < maxCount {
                let data = try Self.nextData(bufferedFD, from: position) ?? end
                if data > position {
                    let stop = min(data, end)
                    extents.append((stop - position, true))
                    position = stop
                    continue
                }
                let hole = try Self.nextHole(bufferedFD, from: position) ?? end
                let stop = min(max(hole, position + 1), end)
                extents.append((stop - position, false))
                position = stop
            }
        } catch {
            throw .io(path: configuration.imagePath, error.errno)
        }
        return extents
    }

    /// The first hole at or after `offset` (`lseek(SEEK_HOLE)`; the file's end counts as one).
    static func nextHole(_ fd: FileDescriptor, from offset: UInt64) throws(SystemCallError) -> UInt64? {
        try seek(fd, offset, whence: 4, "lseek(SEEK_HOLE)")
    }

    /// The first offset at or after `offset` that holds data (`lseek(SEEK_DATA)`); nil when only
    /// a hole follows up to the end of the file (and beyond it, a qcow2 container's sparse tail).
    static func nextData(_ fd: FileDescriptor, from offset: UInt64) throws(SystemCallError) -> UInt64? {
        try seek(fd, offset, whence: 3, "lseek(SEEK_DATA)")
    }

    /// `lseek` with SEEK_DATA (3) or SEEK_HOLE (4), which Glibc only exports under _GNU_SOURCE;
    /// nil for ENXIO (at or past the end of the file).
    private static func seek(_ fd: FileDescriptor, _ offset: UInt64, whence: Int32, _ name: StaticString) throws(SystemCallError) -> UInt64? {
        do throws(SystemCallError) {
            return UInt64(try Syscall.call(name) { Glibc.lseek(fd.rawValue, off_t(offset), whence) })
        } catch where error.errno == .noSuchAddressOrDevice {
            return nil
        }
    }

    private func check(offset: UInt64, length: UInt64) throws(VolumeError) {
        if closed { throw .closed(name: configuration.name) }
        guard offset <= size, length <= size - offset else { throw .outOfRange(offset: offset, length: length, size: size) }
    }

    /// O_DIRECT where alignment allows, the page cache otherwise (both see the same file).
    private nonisolated func handle(offset: UInt64, length: Int, address: UnsafeRawPointer) -> IOHandle {
        let a = UInt64(Self.directAlignment)
        let aligned = offset % a == 0 && UInt64(length) % a == 0 && UInt(bitPattern: address) % UInt(a) == 0
        return .file(aligned ? directFD : bufferedFD)
    }

    /// Every change to the image: activity log first, bitmap, then the change itself.
    ///
    /// Trims and zero-ranges carry no data and may span the whole disk (mkfs discards it all);
    /// they are split so that one piece never needs more extents than the log can hold hot.
    ///
    /// A guest change is handed to the replicator before the local I/O starts (both run at
    /// once) and completes when both are done; its range becomes dirty when the peer did not
    /// acknowledge it. Overlapping changes run in arrival order (``RangeLocks``).
    private func modify(
        offset: UInt64, length: UInt64, origin: Origin,
        change: (UInt64, UInt64) -> ReplicatedChange,
        body: (UInt64, UInt64) async throws(Errno) -> Void
    ) async throws(VolumeError) {
        if origin == .guest { try await passGuestChangeGate() }
        let unreplicated = try await modifyInRangeLock(offset: offset, length: length, origin: origin, change: change, body: body)
        // Outside the range lock: the resync that will carry this range to the peer takes it.
        if unreplicated { try await waitUntilReplicatedOrAllowed(offset: offset, length: length) }
    }

    /// The change itself; returns whether some of it is not on the peer (its range is dirty).
    private func modifyInRangeLock(
        offset: UInt64, length: UInt64, origin: Origin,
        change: (UInt64, UInt64) -> ReplicatedChange,
        body: (UInt64, UInt64) async throws(Errno) -> Void
    ) async throws(VolumeError) -> Bool {
        try check(offset: offset, length: length)
        guard length > 0 else { return false }
        var unreplicated = false
        let epoch = origin == .guest ? beginSettling() : nil
        defer { if let epoch { endSettling(epoch) } }
        await lockRange(offset, offset + length)
        defer { unlockRange(offset, offset + length) }
        let chunk = UInt64(max(1, activityLog.configuration.hotExtentLimit / 4)) * activityLog.configuration.extentSize
        var position = offset
        while position < offset + length {
            let piece = min(chunk - position % chunk, offset + length - position)
            let start = position  // the defer below runs after `position` moves on
            // The activity log protects the primary's guest writes. What the peer sends needs
            // none: a write the peer did not see acknowledged is dirty in the peer's own bitmap
            // (or its log), and a sync target is Inconsistent until its resync completes.
            let logged = origin == .guest
            if logged { try await activate(offset: start, length: piece) }
            defer { if logged { releaseExtents(offset: start, length: piece) } }
            // A held change starts no generation: it may never be acknowledged (see
            // waitUntilReplicatedOrAllowed), and then the peer's next resync simply overwrites it.
            if origin == .guest && replicator == nil && unreplicatedPolicy == .complete { await startOwnGenerationIfNeeded() }
            let ticket = origin == .guest ? replicator?.submit(change(position, piece)) : nil
            var dirty = origin == .guest && ticket == nil
            var failure: Errno?
            do {
                try await body(position, piece)
            } catch {
                failure = error
                dirty = true  // the peer may hold what we could not write
            }
            if let ticket {
                if await ticket.wait() {
                    if let latency = ticket.latency { metrics.peerAckLatency.record(duration: latency) }
                } else {
                    dirty = true
                    if unreplicatedPolicy == .complete { await startOwnGenerationIfNeeded() }
                }
            }
            if dirty { try? bitmap.set(offset: position, length: piece) }  // in range: checked above
            if let failure { throw .io(path: configuration.imagePath, failure) }
            if dirty && origin == .guest { unreplicated = true }
            position += piece
        }
        return unreplicated
    }

    /// A guest change the peer did not get, under ``UnreplicatedWritePolicy/hold``, completes only
    /// once the peer has it after all (a resync cleared its bits, or the peer became a durable sync
    /// target) or the policy changes; under `.fail`, or when the volume closes, it fails: the guest
    /// never saw it acknowledged, so nothing acknowledged is lost.
    private func waitUntilReplicatedOrAllowed(offset: UInt64, length: UInt64) async throws(VolumeError) {
        func missing() -> Bool { !peerDurablyOutOfSync && ((try? bitmap.isSet(offset: offset, length: length)) ?? false) }
        var held = false
        while unreplicatedPolicy == .hold && !closed && missing() {
            held = true
            await withCheckedContinuation { heldWrites.append($0) }
        }
        if closed && held { throw .closed(name: configuration.name) }
        guard missing() else { return }
        switch unreplicatedPolicy {
        case .complete:
            // From now on we write without the peer, so (DRBD's rule) a generation of our own
            // must be durable before the answer.
            await startOwnGenerationIfNeeded()
        case .fail, .hold:
            throw .io(path: configuration.imagePath, .ioError)
        }
    }

    /// What to do with guest changes the peer misses from now on; held ones are re-examined.
    public func setUnreplicatedWritePolicy(_ policy: UnreplicatedWritePolicy) {
        unreplicatedPolicy = policy
        wakeHeldWrites()
    }

    /// Set by the replication while the peer is durably Inconsistent (a sync target from its
    /// VOLUME_STATE answer until RESYNC_DONE): it cannot be promoted, so nothing it misses can be
    /// lost by a takeover and held changes may complete.
    public func peerIsSyncTarget(_ value: Bool) {
        peerDurablyOutOfSync = value
        if value { wakeHeldWrites() }
    }

    /// Writes waiting for the peer, for the vote or at the guest-change gate.
    public var heldWriteCount: Int { heldWrites.count }

    public func setGuestChangeGate(_ gate: GuestChangeGate) {
        guestChanges = gate
        wakeHeldWrites()
    }

    private func passGuestChangeGate() async throws(VolumeError) {
        while guestChanges == .held && !closed { await withCheckedContinuation { heldWrites.append($0) } }
        switch guestChanges {
        case .open: return
        case .held: throw .closed(name: configuration.name)
        case .refused: throw .io(path: configuration.imagePath, .ioError)
        }
    }

    private func wakeHeldWrites() {
        let waiters = heldWrites
        heldWrites = []
        for waiter in waiters { waiter.resume() }
    }

    private func lockRange(_ lower: UInt64, _ upper: UInt64) async {
        if rangeLocks.tryAcquire(lower, upper) { return }
        await withCheckedContinuation { rangeLocks.enqueue(lower, upper, $0) }
    }

    private func unlockRange(_ lower: UInt64, _ upper: UInt64) {
        for waiter in rangeLocks.release(lower, upper) { waiter.resume() }
    }

    /// Waits until every extent of the range is durably hot, holding a reference on each.
    ///
    /// Activation is FIFO, one write at a time: if every waiting write could queue its cold
    /// extents at once, each transaction's evictions could take the hot extents other waiters
    /// need, and with more wanted extents than the log holds no write would ever be admitted.
    private func activate(offset: UInt64, length: UInt64) async throws(VolumeError) {
        if !activating, try admit(offset: offset, length: length) { return }
        if activating {
            await withCheckedContinuation { activationQueue.append($0) }  // resumed holding the turn
        } else {
            activating = true
        }
        defer { passActivationTurn() }
        while true {
            if let failure = metadataFailure { throw .metadataIO(path: configuration.metadataPath, failure) }
            if try admit(offset: offset, length: length) { return }
            if let transaction = activityLog.makeTransaction() {
                try await commit(transaction)
            } else {
                // Every hot extent is in use by a write in flight: room appears when one ends.
                await withCheckedContinuation { releaseWaiters.append($0) }
            }
        }
    }

    private func admit(offset: UInt64, length: UInt64) throws(VolumeError) -> Bool {
        do {
            return try activityLog.prepareWrite(offset: offset, length: length) == .proceed
        } catch {
            throw .outOfRange(offset: offset, length: length, size: size)
        }
    }

    private func passActivationTurn() {
        if activationQueue.isEmpty {
            activating = false
        } else {
            activationQueue.removeFirst().resume()
        }
    }

    private func releaseExtents(offset: UInt64, length: UInt64) {
        do {
            try activityLog.completeWrite(offset: offset, length: length)
        } catch {
            // A reference released twice or for the wrong range would leak hot extents until no
            // write can be admitted: a bug, never an I/O condition.
            preconditionFailure("activity log: \(error)")
        }
        if !releaseWaiters.isEmpty {
            let waiters = releaseWaiters
            releaseWaiters.removeAll()
            for waiter in waiters { waiter.resume() }
        }
    }

    /// Makes one activity-log transaction durable: bitmap bits of the extents it evicts first
    /// (the log forgets them), then the 4 KiB transaction itself with FUA.
    private func commit(_ transaction: ActivityLogTransaction) async throws(VolumeError) {
        do {
            var blocks = Set<Int>()
            for extent in transaction.evicted {
                let range = activityLog.byteRange(ofExtent: extent)
                let first = bitmap.blockIndex(forByteOffset: range.offset)
                let last = bitmap.blockIndex(forByteOffset: range.offset + range.length - 1)
                blocks.formUnion(first...last)
            }
            for block in blocks.sorted() {
                try await writeMetadata(bitmap.serializedBlock(block), at: metadata.layout.bitmapBlockOffset(block))
                metrics.bitmapWrites.increment()
            }
            try await writeMetadata(
                transaction.bytes, at: metadata.layout.activityLogSlotOffset(transaction.slot), durable: true)
            metrics.activityLogWrites.increment()
            try? activityLog.transactionDidComplete(sequence: transaction.sequence)
        } catch {
            try? activityLog.transactionDidFail(sequence: transaction.sequence)
            metadataFailure = error.errno
            logger.error("activity log write failed", metadata: ["volume": "\(configuration.name)", "error": "\(error)"])
            throw error
        }
    }

    private func writeMetadata(_ bytes: [UInt8], at offset: UInt64, durable: Bool = false) async throws(VolumeError) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 4096)
        defer { buffer.deallocate() }
        buffer.copyBytes(from: bytes)
        do {
            try await ring.writeFully(.file(metadataFD), from: UnsafeRawBufferPointer(buffer), at: offset, durable: durable)
        } catch {
            throw .metadataIO(path: configuration.metadataPath, error)
        }
    }
}
