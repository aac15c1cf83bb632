import FoundationEssentials
import Testing
@testable import Volume

@Suite struct VolumeMetadataTests {
    static let size: UInt64 = 100 << 30

    func sample() throws -> VolumeMetadata {
        var md = try VolumeMetadata(
            volumeUUID: UUID(), clusterUUID: UUID(), volumeSize: Self.size,
            generations: GenerationIdentifiers(
                current: 0x1111, bitmap: 0x2222, history: [0x3333, 0x4444], origin: .promotion),
            flags: [.crashedPrimary], consistency: .consistent)
        md.role = .primary
        return md
    }

    /// File image with both copies: A at sequence 2, B at sequence 1 (older).
    func twoCopies(_ md: inout VolumeMetadata) -> [UInt8] {
        var file = [UInt8](repeating: 0, count: 8192)
        for _ in 0..<2 {
            let (offset, bytes) = md.nextSuperblockWrite()
            file.replaceSubrange(Int(offset)..<(Int(offset) + 4096), with: bytes)
        }
        return file
    }

    @Test func roundTripPicksNewestCopy() throws {
        var md = try sample()
        let file = twoCopies(&md)
        let d = try VolumeMetadata.decode(superblocks: file, volumeSize: Self.size, grainSize: 64 << 10)
        #expect(d.metadata == md)
        #expect(d.metadata.sequence == 2 && d.copy == 0 && d.otherCopyProblem == nil)
        #expect(d.metadata.role == .primary && d.metadata.flags == [.primary, .wasPrimary, .crashedPrimary])
        #expect(d.metadata.generations.history == [0x3333, 0x4444])
        #expect(d.metadata.activityLogTag != 0)
    }

    @Test func layoutIsAlignedAndSized() throws {
        let md = try sample()
        let l = md.layout
        #expect(MetadataLayout.superblockOffsets == [0, 4096])
        #expect(l.activityLogOffset == 8192 && l.activityLogLength == 64 * 4096)
        #expect(l.bitmapOffset == 8192 + 64 * 4096)
        // 100 GiB / 64 KiB = 1.6 Mi grains = 200 KiB of bitmap
        #expect(l.bitmapUsedLength == 200 << 10 && l.bitmapLength == 200 << 10)
        #expect(l.fileSize == l.bitmapOffset + l.bitmapLength)
        #expect(l.activityLogSlotOffset(3) == 8192 + 3 * 4096)
        #expect(l.bitmapBlockOffset(2) == l.bitmapOffset + 8192)
        let odd = MetadataLayout(volumeSize: 1 << 20, grainSize: 64 << 10, activityLogSlots: 2)
        #expect(odd.bitmapUsedLength == 8 && odd.bitmapLength == 4096)
        for v in [l.activityLogOffset, l.bitmapOffset, l.bitmapLength, odd.fileSize] { #expect(v % 4096 == 0) }
    }

    /// Byte ranges of each field in the superblock (docs/format.md).
    static let fields: [(String, Int)] = [
        ("magic", 0), ("version", 8), ("crc", 12), ("sequence", 16), ("volume uuid", 24), ("cluster uuid", 40),
        ("volume size", 56), ("grain size", 64), ("al extent size", 72), ("al slots", 80), ("al limit", 84),
        ("gi current", 88), ("gi bitmap", 96), ("gi history0", 104), ("gi history1", 112), ("flags", 120),
        ("consistency", 124), ("al offset", 128), ("bitmap offset", 136), ("bitmap length", 144),
        ("gi origin", 152), ("reserved", 200), ("reserved end", 4095),
    ]

    @Test(arguments: fields)
    func corruptingOneCopyFallsBackToTheOther(field: (String, Int)) throws {
        var md = try sample()
        var file = twoCopies(&md)
        file[field.1] ^= 0x40   // damage copy A (the newer)
        let d = try VolumeMetadata.decode(superblocks: file, volumeSize: Self.size)
        #expect(d.copy == 1, "\(field.0)")
        #expect(d.metadata.sequence == 1)
        #expect(d.otherCopyProblem != nil)
        var expected = md
        expected.sequence = 1
        #expect(d.metadata == expected)
    }

    @Test(arguments: fields)
    func corruptingBothCopiesIsAnErrorNeverAReset(field: (String, Int)) throws {
        var md = try sample()
        var file = twoCopies(&md)
        file[field.1] ^= 0x40
        file[4096 + field.1] ^= 0x40
        do {
            _ = try VolumeMetadata.decode(superblocks: file, volumeSize: Self.size)
            Issue.record("decoded despite damage in \(field.0)")
        } catch {
            switch field.0 {
            case "magic": #expect(error == .notVmhaMetadata)
            case "version": #expect(error == .unsupportedVersion(found: 2 ^ 0x40))
            default:
                guard case .corrupt(let reason) = error else {
                    Issue.record("\(field.0): \(error)")
                    return
                }
                #expect(reason.contains("copy A") && reason.contains("copy B"))
            }
        }
    }

    @Test func tornSuperblockWriteKeepsPreviousState() throws {
        var md = try sample()
        var file = twoCopies(&md)       // A=2, B=1
        md.generations.startNewGeneration(0x5555, origin: .continuedAsPrimary)
        let (offset, bytes) = md.nextSuperblockWrite()   // sequence 3 → copy B
        #expect(offset == 4096)
        // Torn: only the first 100 bytes land (new sequence, CRC and current GI,
        // old bitmap GI). Past byte 156 both versions are zero, so a longer
        // prefix would be the complete block.
        file.replaceSubrange(4096..<(4096 + 100), with: bytes[..<100])
        let d = try VolumeMetadata.decode(superblocks: file, volumeSize: Self.size)
        #expect(d.metadata.sequence == 2 && d.metadata.generations.current == 0x1111)
        // Complete write: the new state wins.
        file.replaceSubrange(4096..<8192, with: bytes)
        let d2 = try VolumeMetadata.decode(superblocks: file, volumeSize: Self.size)
        #expect(d2.metadata.sequence == 3 && d2.metadata.generations.current == 0x5555 && d2.copy == 1)
    }

    @Test func foreignAndTruncatedFiles() throws {
        #expect(throws: VolumeMetadataError.notVmhaMetadata) {
            try VolumeMetadata.decode(superblocks: [UInt8](repeating: 0, count: 8192), volumeSize: nil)
        }
        #expect(throws: VolumeMetadataError.notVmhaMetadata) {
            try VolumeMetadata.decode(superblocks: Array("QFI\u{fb}".utf8) + [UInt8](repeating: 7, count: 8188), volumeSize: nil)
        }
        var md = try sample()
        let file = twoCopies(&md)
        #expect(throws: VolumeMetadataError.self) {
            try VolumeMetadata.decode(superblocks: Array(file[..<100]), volumeSize: nil)
        }
        // Only copy A present (file cut after 4 KiB) still decodes.
        #expect(try VolumeMetadata.decode(superblocks: Array(file[..<4096]), volumeSize: nil).copy == 0)
    }

    @Test func geometryMismatchIsReported() throws {
        var md = try sample()
        let file = twoCopies(&md)
        #expect(throws: VolumeMetadataError.mismatch(field: "volume size", expected: Self.size + 4096, found: Self.size)) {
            try VolumeMetadata.decode(superblocks: file, volumeSize: Self.size + 4096)
        }
        #expect(throws: VolumeMetadataError.mismatch(field: "grain size", expected: 4096, found: 64 << 10)) {
            try VolumeMetadata.decode(superblocks: file, volumeSize: Self.size, grainSize: 4096)
        }
    }

    /// A superblock as format version 1 wrote it: no generation origin (reserved zeros there).
    func versionOne(_ md: inout VolumeMetadata) -> [UInt8] {
        md.generations.origin = .unknown
        var block = md.nextSuperblockWrite().bytes
        block.storeLittleEndian(UInt32(1), at: 8)
        block.storeLittleEndian(UInt32(0), at: 12)
        block.storeLittleEndian(CRC32C.checksum(block), at: 12)
        return block
    }

    @Test func versionOneStillOpensWithAnUnknownOriginAndIsRewrittenAsVersionTwo() throws {
        var md = try sample()
        let old = versionOne(&md)
        let d = try VolumeMetadata.decode(superblocks: old + [UInt8](repeating: 0, count: 4096), volumeSize: Self.size)
        #expect(d.metadata == md)
        #expect(d.metadata.generations.origin == .unknown)
        var reopened = d.metadata
        let next = reopened.nextSuperblockWrite().bytes
        #expect(next.readLittleEndian(at: 8, as: UInt32.self) == 2)
        // Version 1 kept the origin's bytes zero; a version 1 block that has them set is damaged.
        var bad = old
        bad.storeLittleEndian(UInt32(7), at: 152)
        bad.storeLittleEndian(UInt32(0), at: 12)
        bad.storeLittleEndian(CRC32C.checksum(bad), at: 12)
        #expect(throws: VolumeMetadataError.self) {
            try VolumeMetadata.decode(superblocks: bad + [UInt8](repeating: 0, count: 4096), volumeSize: nil)
        }
    }

    @Test func aNewerFormatIsRefusedNamingBothVersions() throws {
        var md = try sample()
        var block = md.nextSuperblockWrite().bytes
        block.storeLittleEndian(UInt32(3), at: 8)
        block.storeLittleEndian(UInt32(0), at: 12)
        block.storeLittleEndian(CRC32C.checksum(block), at: 12)
        do {
            _ = try VolumeMetadata.decode(superblocks: block + [UInt8](repeating: 0, count: 4096), volumeSize: nil)
            Issue.record("decoded format version 3")
        } catch {
            #expect(error == .unsupportedVersion(found: 3))
            #expect(error.description == "unsupported metadata format version 3 (this build reads versions 1–2)")
        }
    }

    @Test func semanticallyInvalidButChecksummedCopiesAreCorrupt() throws {
        var md = try sample()
        var block = md.nextSuperblockWrite().bytes
        block.storeLittleEndian(UInt32(9), at: 124)          // unknown consistency
        block.storeLittleEndian(UInt32(0), at: 12)
        block.storeLittleEndian(CRC32C.checksum(block), at: 12)
        #expect(throws: VolumeMetadataError.self) {
            try VolumeMetadata.decode(superblocks: block + [UInt8](repeating: 0, count: 4096), volumeSize: nil)
        }
    }

    @Test func invalidConfigurationIsRejected() {
        #expect(throws: VolumeMetadataError.self) {
            try VolumeMetadata(volumeUUID: UUID(), clusterUUID: UUID(), volumeSize: 1 << 30, grainSize: 1000)
        }
        #expect(throws: VolumeMetadataError.self) {
            try VolumeMetadata(volumeUUID: UUID(), clusterUUID: UUID(), volumeSize: 1 << 30,
                               activityLog: .init(extentSize: 4 << 20, hotExtentLimit: 5, slotCount: 64))
        }
    }
}
