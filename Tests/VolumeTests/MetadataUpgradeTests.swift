import Foundation
import Logging
import Testing
import Uring
@testable import Volume

/// A volume whose metadata file was written by format version 1 opens with its generations
/// intact, and its superblock is written back as version 2.
@Suite struct MetadataUpgradeTests {
    @Test func aVersionOneMetadataFileOpensAndIsUpgraded() async throws {
        let directory = NSTemporaryDirectory() + "vmha-md-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let configuration = LocalVolume.Configuration(
            name: "d0", imagePath: directory + "/d0.img", metadataPath: directory + "/d0.meta")
        _ = FileManager.default.createFile(atPath: configuration.imagePath, contents: nil)
        try FileHandle(forWritingTo: URL(fileURLWithPath: configuration.imagePath)).truncate(atOffset: 16 << 20)
        let ring = try IOUring(logger: Logger(label: "test"))

        let created = try await LocalVolume.open(configuration, ring: ring, logger: Logger(label: "test"))
        let generations = await created.generations
        try await created.close()
        #expect(generations.origin == .promotion)

        // Rewrite both superblock copies the way version 1 laid them out: no origin.
        let file = try FileHandle(forUpdating: URL(fileURLWithPath: configuration.metadataPath))
        for offset in MetadataLayout.superblockOffsets {
            try file.seek(toOffset: offset)
            var block = [UInt8](try file.read(upToCount: 4096)!)
            block.storeLittleEndian(UInt32(1), at: 8)
            block.storeLittleEndian(UInt32(0), at: 152)
            block.storeLittleEndian(UInt32(0), at: 12)
            block.storeLittleEndian(CRC32C.checksum(block), at: 12)
            try file.seek(toOffset: offset)
            try file.write(contentsOf: block)
        }
        try file.close()

        let reopened = try await LocalVolume.open(configuration, ring: ring, logger: Logger(label: "test"))
        let read = await reopened.generations
        let metadata = await reopened.metadataSnapshot
        try await reopened.close()
        await ring.shutdown()
        #expect(read.current == generations.current && read.bitmap == generations.bitmap && read.history == generations.history)
        #expect(read.origin == .unknown)
        #expect(metadata.consistency == .consistent)

        let superblocks = [UInt8](try Data(contentsOf: URL(fileURLWithPath: configuration.metadataPath)).prefix(8192))
        let decoded = try VolumeMetadata.decode(superblocks: superblocks, volumeSize: 16 << 20)
        let newest = Array(superblocks[(decoded.copy * 4096)..<(decoded.copy * 4096 + 4096)])
        #expect(newest.readLittleEndian(at: 8, as: UInt32.self) == 2)
    }
}
