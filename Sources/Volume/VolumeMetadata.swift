import FoundationEssentials

/// The persistent per-volume state kept in the metadata file: identity,
/// geometry, generation identifiers and role/consistency flags. The AL ring
/// and the bitmap live in the same file (see ``MetadataLayout``) but are
/// encoded by ``ActivityLog`` and ``DirtyBitmap``.
///
/// The superblock is written alternately into two 4 KiB copies (slot
/// `sequence % 2`), each with its own CRC32C, so a torn superblock write
/// always leaves the previous version intact. Decoding picks the valid copy
/// with the higher sequence number. Byte layout: `docs/format.md`.
///
/// ```swift
/// var md = try VolumeMetadata(volumeUUID: id, clusterUUID: c, volumeSize: size)
/// let (offset, bytes) = md.nextSuperblockWrite()   // write + fdatasync
/// let read = try VolumeMetadata.decode(superblocks: first8KiB,
///                                      volumeSize: imageSize, grainSize: nil)
/// ```
public struct VolumeMetadata: Sendable, Hashable {
    public static let magic: [UInt8] = Array("VMHAMETA".utf8)
    /// Version 2 added the generation origin (offset 152). Version 1 files still open (the
    /// origin reads as unknown: those bytes were reserved zeros) and are written as version 2.
    public static let formatVersion: UInt32 = 2
    public static let readableVersions: ClosedRange<UInt32> = 1...2

    public enum Role: UInt8, Sendable, Hashable { case secondary = 0, primary = 1 }

    /// DRBD's disk states that survive a restart.
    public enum Consistency: UInt8, Sendable, Hashable {
        /// Mid-resync target or never synced: must not be read from or promoted.
        case inconsistent = 0
        /// Consistent but known to be older than the peer (peer went on without us).
        case outdated = 1
        case consistent = 2
    }

    public struct Flags: OptionSet, Sendable, Hashable {
        public var rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let primary = Flags(rawValue: 1 << 0)
        public static let wasPrimary = Flags(rawValue: 1 << 1)
        /// Set (durably) before the first write as primary, cleared on clean
        /// shutdown: if found set, writes may have been in flight at a crash.
        public static let crashedPrimary = Flags(rawValue: 1 << 2)
        /// Set (durably) before the first answer of a guest write the peer misses; cleared when a
        /// resync has brought both sides level. A side without it holds no answered write its peer
        /// lacks, so a split brain can discard its changes whatever the policy.
        public static let answeredWithoutPeer = Flags(rawValue: 1 << 3)
        static let known: Flags = [.primary, .wasPrimary, .crashedPrimary, .answeredWithoutPeer]
    }

    public var volumeUUID: UUID
    public var clusterUUID: UUID
    public var volumeSize: UInt64
    public var grainSize: UInt64
    public var activityLog: ActivityLog.Configuration
    public var generations: GenerationIdentifiers
    public var flags: Flags
    public var consistency: Consistency
    /// Superblock write counter; the copy with the higher value wins.
    public internal(set) var sequence: UInt64

    public var role: Role {
        get { flags.contains(.primary) ? .primary : .secondary }
        set {
            if newValue == .primary { flags.formUnion([.primary, .wasPrimary]) } else { flags.remove(.primary) }
        }
    }

    public var layout: MetadataLayout {
        MetadataLayout(volumeSize: volumeSize, grainSize: grainSize, activityLogSlots: activityLog.slotCount)
    }

    /// Tag binding AL transactions to this volume (first 8 bytes of its UUID).
    public var activityLogTag: UInt64 {
        withUnsafeBytes(of: volumeUUID.uuid) { $0.loadUnaligned(as: UInt64.self) }
    }

    public init(
        volumeUUID: UUID, clusterUUID: UUID, volumeSize: UInt64,
        grainSize: UInt64 = DirtyBitmap.defaultGrainSize,
        activityLog: ActivityLog.Configuration = .default,
        generations: GenerationIdentifiers = GenerationIdentifiers(),
        flags: Flags = [], consistency: Consistency = .inconsistent
    ) throws(VolumeMetadataError) {
        self.volumeUUID = volumeUUID
        self.clusterUUID = clusterUUID
        self.volumeSize = volumeSize
        self.grainSize = grainSize
        self.activityLog = activityLog
        self.generations = generations
        self.flags = flags
        self.consistency = consistency
        self.sequence = 0
        if let problem = Self.validateGeometry(volumeSize: volumeSize, grainSize: grainSize, activityLog: activityLog) {
            throw .invalidConfiguration(problem)
        }
    }

    static func validateGeometry(volumeSize: UInt64, grainSize: UInt64, activityLog: ActivityLog.Configuration) -> String? {
        do {
            _ = try DirtyBitmap(volumeSize: 0, grainSize: grainSize)
            _ = try ActivityLog(configuration: activityLog, volumeSize: volumeSize, volumeTag: 0)
        } catch let e as DirtyBitmapError {
            return e.description
        } catch let e as ActivityLogError {
            return e.description
        } catch {
            return "\(error)"
        }
        return nil
    }

    // MARK: - Encoding

    static let blockSize = 4096

    /// Advances the sequence number and returns the superblock copy to write
    /// and where: copies alternate, so the other one still holds the previous
    /// state if this write is torn.
    public mutating func nextSuperblockWrite() -> (offset: UInt64, bytes: [UInt8]) {
        sequence += 1
        return (MetadataLayout.superblockOffsets[Int(sequence % 2)], encodeSuperblock())
    }

    /// The 4 KiB superblock for the current state and sequence number.
    public func encodeSuperblock() -> [UInt8] {
        let l = layout
        var b = [UInt8]()
        b.reserveCapacity(Self.blockSize)
        b.append(contentsOf: Self.magic)                        // 0
        b.appendLittleEndian(Self.formatVersion)                 // 8
        b.appendLittleEndian(UInt32(0))                          // 12 CRC
        b.appendLittleEndian(sequence)                           // 16
        withUnsafeBytes(of: volumeUUID.uuid) { b.append(contentsOf: $0) }   // 24
        withUnsafeBytes(of: clusterUUID.uuid) { b.append(contentsOf: $0) }  // 40
        b.appendLittleEndian(volumeSize)                         // 56
        b.appendLittleEndian(grainSize)                          // 64
        b.appendLittleEndian(activityLog.extentSize)             // 72
        b.appendLittleEndian(UInt32(activityLog.slotCount))      // 80
        b.appendLittleEndian(UInt32(activityLog.hotExtentLimit)) // 84
        b.appendLittleEndian(generations.current)                // 88
        b.appendLittleEndian(generations.bitmap)                 // 96
        b.appendLittleEndian(generations.history[0])             // 104
        b.appendLittleEndian(generations.history[1])             // 112
        b.appendLittleEndian(flags.rawValue)                     // 120
        b.appendLittleEndian(UInt32(consistency.rawValue))       // 124
        b.appendLittleEndian(l.activityLogOffset)                // 128
        b.appendLittleEndian(l.bitmapOffset)                     // 136
        b.appendLittleEndian(l.bitmapLength)                     // 144
        b.appendLittleEndian(UInt32(generations.origin.rawValue)) // 152
        b.append(contentsOf: repeatElement(0, count: Self.blockSize - b.count))
        b.storeLittleEndian(CRC32C.checksum(b), at: 12)
        return b
    }

    enum CopyResult {
        case valid(VolumeMetadata)
        case foreign
        case otherVersion(UInt32)
        case damaged(String)
    }

    static func decodeCopy(_ block: [UInt8]) -> CopyResult {
        guard block.count == blockSize else { return .damaged("copy is \(block.count) bytes, expected 4096") }
        guard Array(block[0..<8]) == magic else { return .foreign }
        let version: UInt32 = block.readLittleEndian(at: 8)
        guard readableVersions.contains(version) else { return .otherVersion(version) }
        var zeroed = block
        zeroed.storeLittleEndian(UInt32(0), at: 12)
        guard CRC32C.checksum(zeroed) == block.readLittleEndian(at: 12, as: UInt32.self) else {
            return .damaged("CRC mismatch")
        }
        func uuid(at o: Int) -> UUID {
            var u = UUID().uuid
            withUnsafeMutableBytes(of: &u) { raw in for i in 0..<16 { raw[i] = block[o + i] } }
            return UUID(uuid: u)
        }
        let flags = Flags(rawValue: block.readLittleEndian(at: 120))
        guard Flags.known.isSuperset(of: flags) else {
            return .damaged("unknown flags 0x\(String(flags.rawValue, radix: 16))")
        }
        let rawConsistency: UInt32 = block.readLittleEndian(at: 124)
        guard rawConsistency <= 255, let consistency = Consistency(rawValue: UInt8(rawConsistency)) else {
            return .damaged("unknown consistency \(rawConsistency)")
        }
        // Version 1 kept these bytes zero (reserved): its origin reads as unknown.
        let rawOrigin: UInt32 = block.readLittleEndian(at: 152)
        guard rawOrigin <= 255, let origin = GenerationOrigin(rawValue: UInt8(rawOrigin)) else {
            return .damaged("unknown generation origin \(rawOrigin)")
        }
        let al = ActivityLog.Configuration(
            extentSize: block.readLittleEndian(at: 72),
            hotExtentLimit: Int(block.readLittleEndian(at: 84, as: UInt32.self)),
            slotCount: Int(block.readLittleEndian(at: 80, as: UInt32.self)))
        let volumeSize: UInt64 = block.readLittleEndian(at: 56)
        let grainSize: UInt64 = block.readLittleEndian(at: 64)
        if let problem = validateGeometry(volumeSize: volumeSize, grainSize: grainSize, activityLog: al) {
            return .damaged(problem)
        }
        var md: VolumeMetadata
        do {
            md = try VolumeMetadata(
                volumeUUID: uuid(at: 24), clusterUUID: uuid(at: 40), volumeSize: volumeSize,
                grainSize: grainSize, activityLog: al,
                generations: GenerationIdentifiers(
                    current: block.readLittleEndian(at: 88), bitmap: block.readLittleEndian(at: 96),
                    history: [block.readLittleEndian(at: 104), block.readLittleEndian(at: 112)], origin: origin),
                flags: flags, consistency: consistency)
        } catch {
            return .damaged(error.description)
        }
        md.sequence = block.readLittleEndian(at: 16)
        let l = md.layout
        guard block.readLittleEndian(at: 128, as: UInt64.self) == l.activityLogOffset,
              block.readLittleEndian(at: 136, as: UInt64.self) == l.bitmapOffset,
              block.readLittleEndian(at: 144, as: UInt64.self) == l.bitmapLength
        else { return .damaged("region offsets disagree with geometry") }
        guard block[156...].allSatisfy({ $0 == 0 }) else { return .damaged("reserved bytes not zero") }
        return .valid(md)
    }

    /// Result of ``decode(superblocks:volumeSize:grainSize:)``.
    public struct Decoded: Sendable, Hashable {
        public var metadata: VolumeMetadata
        /// 0 for copy A, 1 for copy B.
        public var copy: Int
        /// Why the other copy was not used, if it was damaged (worth a log line
        /// and a rewrite); `nil` if it was valid but older.
        public var otherCopyProblem: String?
    }

    /// Decodes the first 8 KiB of a metadata file (both superblock copies).
    ///
    /// - Parameters:
    ///   - volumeSize: the image's actual size; a different recorded size is `.mismatch`.
    ///   - grainSize: expected grain size, if the caller has one configured.
    public static func decode(superblocks bytes: [UInt8], volumeSize: UInt64?, grainSize: UInt64? = nil)
        throws(VolumeMetadataError) -> Decoded
    {
        let size = blockSize
        let copies = (0..<2).map { i -> CopyResult in
            guard bytes.count >= (i + 1) * size else { return .damaged("file too short for copy \(i == 0 ? "A" : "B")") }
            return decodeCopy(Array(bytes[(i * size)..<((i + 1) * size)]))
        }
        func describe(_ r: CopyResult) -> String {
            switch r {
            case .valid: "valid"
            case .foreign: "no VMHAMETA magic"
            case .otherVersion(let v): "format version \(v)"
            case .damaged(let why): why
            }
        }
        var best: Decoded?
        for (i, c) in copies.enumerated() {
            guard case .valid(let md) = c else { continue }
            if best == nil || md.sequence > best!.metadata.sequence {
                let other = copies[1 - i]
                var problem: String? = nil
                if case .valid = other {} else { problem = describe(other) }
                best = Decoded(metadata: md, copy: i, otherCopyProblem: problem)
            }
        }
        guard let found = best else {
            if copies.allSatisfy({ if case .foreign = $0 { true } else { false } }) { throw .notVmhaMetadata }
            for c in copies { if case .otherVersion(let v) = c { throw .unsupportedVersion(found: v) } }
            throw .corrupt("copy A: \(describe(copies[0])); copy B: \(describe(copies[1]))")
        }
        if let v = volumeSize, v != found.metadata.volumeSize {
            throw .mismatch(field: "volume size", expected: v, found: found.metadata.volumeSize)
        }
        if let g = grainSize, g != found.metadata.grainSize {
            throw .mismatch(field: "grain size", expected: g, found: found.metadata.grainSize)
        }
        return found
    }
}
