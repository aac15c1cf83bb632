import Foundation
import Harness
import Testing
@testable import Volume

#if canImport(Glibc)
import Glibc
#endif

/// `vmha inspect` on real metadata files: one vmhad left behind by kill -9, and the files it must
/// refuse (docs/cli.md).
@Suite("vmha inspect", .serialized)
struct MetadataInspectionTests {
    func inspect(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try builtProduct("vmha"))
        process.arguments = ["inspect"] + arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
    }

    /// What vmhad left after kill -9 just after a guest write: a primary marked crashed, the
    /// written extent hot in the activity log (what recovery will mark dirty).
    @Test func showsACrashedPrimarysHotExtentAndRefusesWhatIsNotMetadata() async throws {
        let fixture = try ExportFixture(size: 64 << 20)
        let vmhad = Process()
        vmhad.executableURL = URL(fileURLWithPath: try builtProduct("vmhad"))
        vmhad.arguments = ["--export", "\(fixture.name):\(fixture.imagePath):\(fixture.socketPath):\(fixture.metadataPath)", "--socket-mode", "600"]
        vmhad.standardError = FileHandle.nullDevice
        try vmhad.run()
        defer { if vmhad.isRunning { kill(vmhad.processIdentifier, SIGKILL) } }
        for _ in 0..<200 where access(fixture.socketPath, F_OK) != 0 { try await Task.sleep(for: .milliseconds(10)) }
        // 1 MiB at 9 MiB: inside activity-log extent 2 (4 MiB extents).
        _ = try await runDetached("/usr/bin/qemu-io", ["-f", "raw", "-c", "write -P 0x5a 9M 1M", fixture.uri])
        kill(vmhad.processIdentifier, SIGKILL)
        vmhad.waitUntilExit()

        let json = try inspect(["--json", fixture.metadataPath])
        #expect(json.status == 0, "\(json.stderr)")
        let inspection = try JSONDecoder().decode(MetadataInspection.self, from: Data(json.stdout.utf8))
        #expect(inspection.role == "primary")
        #expect(inspection.flags.contains("crashedPrimary"))
        #expect(inspection.consistency == "consistent")
        #expect(inspection.volumeSize == 64 << 20)
        #expect(inspection.activityLog.newestSequence != nil)
        #expect(inspection.activityLog.hotExtents.contains(2), "hot extents \(inspection.activityLog.hotExtents)")
        #expect(inspection.activityLog.slots.contains { $0.state == "valid" })
        #expect(inspection.superblocks.map(\.copy) == ["A", "B"])
        #expect(inspection.bitmap != nil && inspection.bitmapProblem == nil)
        #expect(inspection.fileSize == inspection.expectedFileSize)
        let text = try inspect([fixture.metadataPath])
        #expect(text.status == 0)
        #expect(text.stdout.contains("role primary, consistency consistent, flags primary,"), "\(text.stdout)")
        #expect(text.stdout.contains("crashedPrimary"))
        #expect(text.stdout.contains("hot extents"))
        // Read only: the file is byte for byte what it was.
        let before = try Data(contentsOf: URL(fileURLWithPath: fixture.metadataPath))
        _ = try inspect([fixture.metadataPath])
        #expect(try Data(contentsOf: URL(fileURLWithPath: fixture.metadataPath)) == before)

        // The image is not metadata: refused with the reason, exit 65.
        let foreign = try inspect([fixture.imagePath])
        #expect(foreign.status == 65)
        #expect(foreign.stderr.contains("not a vmha metadata file"), "\(foreign.stderr)")
        #expect(foreign.stdout.isEmpty)
        // Missing: 66.
        let missing = try inspect([fixture.directory + "/nothing.vmha"])
        #expect(missing.status == 66)
        #expect(missing.stderr.contains("cannot read"))

        // One superblock copy damaged: shown, with the other in use.
        var bytes = [UInt8](before)
        let inUse = inspection.copyInUse == "A" ? 0 : 4096
        let other = 4096 - inUse
        bytes[other + 60] ^= 0xFF
        try Data(bytes).write(to: URL(fileURLWithPath: fixture.metadataPath))
        let oneDamaged = try inspect(["--json", fixture.metadataPath])
        #expect(oneDamaged.status == 0)
        let partly = try JSONDecoder().decode(MetadataInspection.self, from: Data(oneDamaged.stdout.utf8))
        #expect(partly.superblocks[other / 4096].state.contains("CRC"), "\(partly.superblocks)")
        // Both damaged: corrupt, exit 65.
        bytes[inUse + 60] ^= 0xFF
        try Data(bytes).write(to: URL(fileURLWithPath: fixture.metadataPath))
        let corrupt = try inspect([fixture.metadataPath])
        #expect(corrupt.status == 65)
        #expect(corrupt.stderr.contains("metadata corrupt"), "\(corrupt.stderr)")
    }

    /// Cut short after the superblocks: the geometry still shows, the bitmap says why it is missing.
    @Test func aTruncatedFileShowsItsSuperblockAndWhatIsMissing() throws {
        var md = try VolumeMetadata(
            volumeUUID: UUID(), clusterUUID: UUID(), volumeSize: 1 << 30, grainSize: 64 << 10, activityLog: .default,
            generations: GenerationIdentifiers(), flags: [], consistency: .inconsistent)
        let first = md.nextSuperblockWrite()
        let second = md.nextSuperblockWrite()
        var file = [UInt8](repeating: 0, count: 8192)
        file.replaceSubrange(Int(first.offset)..<(Int(first.offset) + 4096), with: first.bytes)
        file.replaceSubrange(Int(second.offset)..<(Int(second.offset) + 4096), with: second.bytes)
        let inspection = try MetadataInspection(file: file)
        #expect(inspection.role == "secondary")
        #expect(inspection.consistency == "inconsistent")
        #expect(inspection.bitmap == nil)
        #expect(inspection.bitmapProblem?.contains("the bitmap ends at") == true)
        #expect(inspection.activityLog.slots.allSatisfy { $0.reason == "ring truncated" })
        #expect(inspection.superblocks.allSatisfy { $0.state.hasPrefix("valid") })
        #expect(inspection.fileSize < inspection.expectedFileSize)
        #expect(inspection.summary.contains("the geometry needs"))
    }
}
