import Foundation

/// What a metadata file holds, read without changing it (`vmha inspect`, the support bundle):
/// both superblock copies, the one in use, generations, flags, the dirty bitmap's summary and
/// each activity-log slot. Pure: the caller reads the file's bytes.
public struct MetadataInspection: Codable, Sendable, Equatable {
    public struct SuperblockCopy: Codable, Sendable, Equatable {
        public var copy: String
        /// `valid (sequence N)`, or why it was not usable.
        public var state: String
        public var sequence: UInt64?
    }
    public struct Generations: Codable, Sendable, Equatable {
        public var current: String
        public var bitmap: String
        public var history: [String]
        public var origin: String
    }
    public struct Bitmap: Codable, Sendable, Equatable {
        public var grainSize: UInt64
        public var grains: Int
        public var dirtyGrains: Int
        public var dirtyBytes: UInt64
        /// The first dirty runs (offset, length), at most `runLimit`.
        public var firstRuns: [[UInt64]]
        public var runs: Int
        public static let runLimit = 16
    }
    public struct ActivityLogSlot: Codable, Sendable, Equatable {
        public var slot: Int
        /// `valid`, `invalid`; empty slots are not listed.
        public var state: String
        public var sequence: UInt64?
        public var extents: Int?
        public var reason: String?
    }
    public struct ActivityLogSummary: Codable, Sendable, Equatable {
        public var extentSize: UInt64
        public var slotCount: Int
        public var hotExtentLimit: Int
        /// The newest valid transaction: what a crash recovery would mark dirty.
        public var newestSequence: UInt64?
        public var hotExtents: [UInt32]
        public var slots: [ActivityLogSlot]
    }

    public var formatVersion: UInt32
    public var superblocks: [SuperblockCopy]
    public var copyInUse: String
    public var volumeUUID: String
    public var clusterUUID: String
    public var volumeSize: UInt64
    public var role: String
    public var flags: [String]
    public var consistency: String
    public var generations: Generations
    public var fileSize: UInt64
    public var expectedFileSize: UInt64
    public var bitmap: Bitmap?
    /// Why the bitmap could not be read (file shorter than the geometry says), if so.
    public var bitmapProblem: String?
    public var activityLog: ActivityLogSummary

    /// Inspects a whole metadata file. A file that is not vmha metadata, of an unknown version or
    /// with both superblock copies damaged is refused with the decoder's error.
    public init(file bytes: [UInt8]) throws(VolumeMetadataError) {
        let decoded = try VolumeMetadata.decode(superblocks: bytes, volumeSize: nil)
        let md = decoded.metadata
        let layout = md.layout
        formatVersion = bytes.count >= 12 ? bytes.readLittleEndian(at: 8 + decoded.copy * Int(MetadataLayout.blockSize), as: UInt32.self) : 0
        superblocks = (0..<2).map { i in
            let name = i == 0 ? "A" : "B"
            if i == decoded.copy { return SuperblockCopy(copy: name, state: "valid, in use", sequence: md.sequence) }
            guard bytes.count >= (i + 1) * Int(MetadataLayout.blockSize) else {
                return SuperblockCopy(copy: name, state: "missing (file too short)", sequence: nil)
            }
            if let problem = decoded.otherCopyProblem { return SuperblockCopy(copy: name, state: problem, sequence: nil) }
            let sequence: UInt64 = bytes.readLittleEndian(at: i * Int(MetadataLayout.blockSize) + 16)
            return SuperblockCopy(copy: name, state: "valid, older", sequence: sequence)
        }
        copyInUse = decoded.copy == 0 ? "A" : "B"
        volumeUUID = md.volumeUUID.uuidString
        clusterUUID = md.clusterUUID.uuidString
        volumeSize = md.volumeSize
        role = md.role == .primary ? "primary" : "secondary"
        let names: [(VolumeMetadata.Flags, String)] = [
            (.primary, "primary"), (.wasPrimary, "wasPrimary"), (.crashedPrimary, "crashedPrimary"), (.answeredWithoutPeer, "answeredWithoutPeer"),
        ]
        flags = names.filter { md.flags.contains($0.0) }.map(\.1)
        consistency = switch md.consistency {
        case .inconsistent: "inconsistent"
        case .outdated: "outdated"
        case .consistent: "consistent"
        }
        func hex(_ g: UInt64) -> String {
            let digits = String(g, radix: 16, uppercase: true)
            return String(repeating: "0", count: max(0, 16 - digits.count)) + digits
        }
        let origin = switch md.generations.origin {
        case .unknown: "unknown"
        case .continuedAsPrimary: "continuedAsPrimary"
        case .promotion: "promotion"
        }
        generations = Generations(
            current: hex(md.generations.current), bitmap: hex(md.generations.bitmap), history: md.generations.history.map(hex), origin: origin)
        fileSize = UInt64(bytes.count)
        expectedFileSize = layout.fileSize
        let bitmapEnd = layout.bitmapOffset + layout.bitmapUsedLength
        if UInt64(bytes.count) >= bitmapEnd {
            do {
                let map = try DirtyBitmap(
                    volumeSize: md.volumeSize, grainSize: md.grainSize, serialized: Array(bytes[Int(layout.bitmapOffset)..<Int(bitmapEnd)]))
                var first: [[UInt64]] = []
                var count = 0
                for run in map.runs {
                    if first.count < Bitmap.runLimit { first.append([run.offset, run.length]) }
                    count += 1
                }
                bitmap = Bitmap(
                    grainSize: md.grainSize, grains: map.grainCount, dirtyGrains: map.setCount, dirtyBytes: map.dirtyByteCount,
                    firstRuns: first, runs: count)
            } catch {
                bitmapProblem = "\(error)"
            }
        } else {
            bitmapProblem = "file is \(bytes.count) bytes, the bitmap ends at \(bitmapEnd)"
        }
        let al = md.activityLog
        let ringStart = Int(layout.activityLogOffset)
        let ring = bytes.count > ringStart ? Array(bytes[ringStart..<min(bytes.count, ringStart + al.ringSize)]) : []
        let recovered = ActivityLogRecovery(ring: ring, slotCount: al.slotCount, volumeTag: md.activityLogTag, extentSize: al.extentSize)
        var slots: [ActivityLogSlot] = []
        let size = ActivityLogTransaction.blockSize
        let shift = UInt32(al.extentSize.trailingZeroBitCount)
        for slot in 0..<al.slotCount {
            let lower = slot * size
            guard lower + size <= ring.count else {
                slots.append(ActivityLogSlot(slot: slot, state: "invalid", reason: "ring truncated"))
                continue
            }
            switch ActivityLogTransaction.decode(ring[lower..<(lower + size)], volumeTag: md.activityLogTag, extentShift: shift) {
            case .empty: continue
            case .invalid(let reason): slots.append(ActivityLogSlot(slot: slot, state: "invalid", reason: reason))
            case .valid(let sequence, let extents):
                let misplaced = sequence % UInt64(al.slotCount) != UInt64(slot)
                slots.append(
                    ActivityLogSlot(
                        slot: slot, state: misplaced ? "invalid" : "valid", sequence: sequence, extents: extents.count,
                        reason: misplaced ? "sequence \(sequence) does not belong in this slot" : nil))
            }
        }
        activityLog = ActivityLogSummary(
            extentSize: al.extentSize, slotCount: al.slotCount, hotExtentLimit: al.hotExtentLimit, newestSequence: recovered.sequence,
            hotExtents: recovered.extents, slots: slots)
    }

    /// The inspection as `vmha inspect` prints it.
    public var summary: String {
        let i = self
        var lines = [
            "format version \(i.formatVersion), superblock copy \(i.copyInUse) in use"
        ]
        for s in i.superblocks { lines.append("  copy \(s.copy): \(s.state)\(s.sequence.map { " (sequence \($0))" } ?? "")") }
        lines.append("volume \(i.volumeUUID), cluster \(i.clusterUUID), \(i.volumeSize) bytes")
        lines.append("role \(i.role), consistency \(i.consistency), flags \(i.flags.isEmpty ? "none" : i.flags.joined(separator: ","))")
        let g = i.generations
        lines.append("generations: current \(g.current) (\(g.origin)), bitmap \(g.bitmap), history \(g.history.joined(separator: " "))")
        if let b = i.bitmap {
            lines.append("bitmap: \(b.dirtyGrains)/\(b.grains) grains of \(b.grainSize) bytes dirty (\(b.dirtyBytes) bytes) in \(b.runs) runs")
            for r in b.firstRuns { lines.append("  dirty \(r[0])+\(r[1])") }
            if b.runs > b.firstRuns.count { lines.append("  … \(b.runs - b.firstRuns.count) more runs") }
        } else {
            lines.append("bitmap: unreadable: \(i.bitmapProblem ?? "?")")
        }
        let a = i.activityLog
        lines.append(
            "activity log: \(a.slotCount) slots, extent \(a.extentSize) bytes, hot limit \(a.hotExtentLimit); newest transaction \(a.newestSequence.map(String.init) ?? "none") with \(a.hotExtents.count) hot extents")
        for s in a.slots {
            lines.append("  slot \(s.slot): \(s.state)\(s.sequence.map { " sequence \($0)" } ?? "")\(s.extents.map { ", \($0) extents" } ?? "")\(s.reason.map { ": \($0)" } ?? "")")
        }
        if i.fileSize < i.expectedFileSize { lines.append("file is \(i.fileSize) bytes, the geometry needs \(i.expectedFileSize)") }
        return lines.joined(separator: "\n")
    }

    /// Reads the superblocks first, so that a foreign (possibly huge) file is refused after 8 KiB;
    /// then only as much as the geometry says the file holds.
    public static func read(path: String) throws -> MetadataInspection {
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        let head = Array(try handle.read(upToCount: 2 * Int(MetadataLayout.blockSize)) ?? Data())
        let layout = try VolumeMetadata.decode(superblocks: head, volumeSize: nil).metadata.layout
        let rest = Array(try handle.read(upToCount: max(0, Int(layout.fileSize) - head.count)) ?? Data())
        return try MetadataInspection(file: head + rest)
    }
}
