import Foundation
import Logging
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

        public init(name: String, imagePath: String, metadataPath: String) {
            self.name = name
            self.imagePath = imagePath
            self.metadataPath = metadataPath
        }
    }

    /// What opening the volume found.
    public struct OpenReport: Sendable {
        public var createdMetadata: Bool
        public var uncleanShutdown: Bool
        public var recoveredExtents: Int
        public var dirtyBytes: UInt64
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

    /// Whether writes also reached the peer (set by replication). While false, every write,
    /// trim and zero-range sets its bits in the dirty bitmap.
    public var peerInSync = false

    public var dirtyBytes: UInt64 { bitmap.dirtyByteCount }
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
        guard stat(image, &st) == 0 else {
            if errno == ENOENT { throw .imageMissing(path: image) }
            throw .io(path: image, Errno(rawValue: errno))
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw .imageUnusable(path: image, reason: "not a regular file") }
        let direct: FileDescriptor, buffered: FileDescriptor
        do {
            direct = try FileDescriptor.open(image, .readWrite, options: [.direct, .closeOnExec])
            buffered = try FileDescriptor.open(image, .readWrite, options: [.closeOnExec])
        } catch {
            throw .io(path: image, error as? Errno ?? .ioError)
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
                    try Syscall.call { ftruncate(buffered.rawValue, off_t(size)) }
                }
            }
            guard size > 0, size % 512 == 0 else {
                throw VolumeError.imageUnusable(path: image, reason: "size \(size) is not a positive multiple of 512")
            }
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
            throw .io(path: image, error as? Errno ?? .ioError)
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
    }

    private static func openMetadata(
        _ configuration: Configuration, size: UInt64, ring: IOUring, logger: Logger
    ) async throws(VolumeError) -> (FileDescriptor, VolumeMetadata, DirtyBitmap, ActivityLog, OpenReport) {
        let path = configuration.metadataPath
        let exists = access(path, F_OK) == 0
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(
                path, .readWrite, options: exists ? [.closeOnExec] : [.create, .exclusiveCreate, .closeOnExec],
                permissions: [.ownerReadWrite])
        } catch {
            throw .metadataIO(path: path, error as? Errno ?? .ioError)
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
                if !recovered.extents.isEmpty {
                    // Extents still hot on disk: writes may have been in flight there.
                    recovered.markDirty(in: &bitmap)
                    report.recoveredExtents = recovered.extents.count
                }
                recovery = recovered
            } else {
                do {
                    metadata = try VolumeMetadata(
                        volumeUUID: UUID(), clusterUUID: configuration.clusterUUID, volumeSize: size,
                        grainSize: configuration.grainSize, activityLog: configuration.activityLog,
                        consistency: .consistent)
                    bitmap = try DirtyBitmap(volumeSize: size, grainSize: configuration.grainSize)
                } catch {
                    throw VolumeError.imageUnusable(path: configuration.imagePath, reason: "\(error)")
                }
                try Syscall.call { ftruncate(fd.rawValue, off_t(metadata.layout.fileSize)) }
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
            try Syscall.call { fdatasync(fd.rawValue) }
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
            throw .metadataIO(path: path, error as? Errno ?? .ioError)
        }
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
            throw .metadataIO(path: path, error as? Errno ?? .ioError)
        }
        return bytes
    }

    private static func writeBytes(_ fd: FileDescriptor, _ bytes: [UInt8], at offset: UInt64, path: String) throws(VolumeError) {
        do {
            _ = try bytes.withUnsafeBytes { try fd.writeAll(toAbsoluteOffset: Int64(offset), $0) }
        } catch {
            throw .metadataIO(path: path, error as? Errno ?? .ioError)
        }
    }

    /// Clean close: persists the whole bitmap, empties the activity log, clears the unclean flag.
    public func close() async throws(VolumeError) {
        guard !closed else { return }
        closed = true
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
    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, fua: Bool) async throws(VolumeError) {
        try await modify(offset: offset, length: UInt64(data.count)) { (_, _) async throws(Errno) in
            let handle = self.handle(offset: offset, length: data.count, address: data.baseAddress!)
            try await self.ring.writeFully(handle, from: data, at: offset, durable: fua)
        }
    }

    /// Deallocates a range (NBD TRIM): it reads back as zeroes.
    public func trim(offset: UInt64, length: UInt64) async throws(VolumeError) {
        try await modify(offset: offset, length: length) { (offset, length) async throws(Errno) in
            try await self.ring.punchHole(.file(self.bufferedFD), offset: offset, length: length)
        }
    }

    /// Zeroes a range (NBD WRITE_ZEROES); `allocate` keeps it allocated (NBD_CMD_FLAG_NO_HOLE).
    public func writeZeroes(offset: UInt64, length: UInt64, allocate: Bool, fua: Bool) async throws(VolumeError) {
        try await modify(offset: offset, length: length) { (offset, length) async throws(Errno) in
            if allocate {
                try await self.ring.zeroRange(.file(self.bufferedFD), offset: offset, length: length)
            } else {
                try await self.ring.punchHole(.file(self.bufferedFD), offset: offset, length: length)
            }
            if fua { try await self.ring.fsync(.file(self.bufferedFD), dataOnly: true) }
        }
    }

    /// Makes every completed write durable (NBD FLUSH).
    public func flush() async throws(VolumeError) {
        do {
            try await ring.fsync(.file(directFD), dataOnly: true)
        } catch {
            throw .io(path: configuration.imagePath, error)
        }
    }

    /// A copy of the dirty bitmap (for resync and for tests).
    public func dirtyBitmap() -> DirtyBitmap { bitmap }

    /// Records a sync point: the replicas agree, nothing is dirty (resync end, or a new volume).
    public func clearDirty() async throws(VolumeError) {
        bitmap.clearAll()
        try await writeMetadata(bitmap.serialized(), at: metadata.layout.bitmapOffset, durable: true)
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
    private func modify(
        offset: UInt64, length: UInt64, _ body: (UInt64, UInt64) async throws(Errno) -> Void
    ) async throws(VolumeError) {
        try check(offset: offset, length: length)
        let chunk = UInt64(max(1, activityLog.configuration.hotExtentLimit / 4)) * activityLog.configuration.extentSize
        var position = offset
        while position < offset + length {
            let piece = min(chunk - position % chunk, offset + length - position)
            try await activate(offset: position, length: piece)
            defer { releaseExtents(offset: position, length: piece) }
            if !peerInSync {
                try? bitmap.set(offset: position, length: piece)  // in range: checked above
            }
            do {
                try await body(position, piece)
            } catch {
                throw .io(path: configuration.imagePath, error)
            }
            position += piece
        }
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
        try? activityLog.completeWrite(offset: offset, length: length)
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
            }
            try await writeMetadata(
                transaction.bytes, at: metadata.layout.activityLogSlotOffset(transaction.slot), durable: true)
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
