import Foundation
import Logging
import SystemCalls
import SystemPackage
import Testing
import Uring
@testable import Volume

#if canImport(Glibc)
import Glibc
#endif

/// A missing image and a full disk: clear errors, nothing lost.
@Suite("Bad environment", .serialized)
struct BadEnvironmentTests {
    @Test func aMissingImageIsNamedAndNothingIsCreated() async throws {
        let directory = NSTemporaryDirectory() + "vmha-missing-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let ring = try IOUring(logger: Logger(label: "test"))
        defer { Task { await ring.shutdown() } }
        let configuration = LocalVolume.Configuration(name: "d0", imagePath: directory + "/nope.img", metadataPath: directory + "/nope.vmha")
        await #expect {
            _ = try await LocalVolume.open(configuration, ring: ring, logger: Logger(label: "test"))
        } throws: { error in
            "\(error)" == "image \(directory)/nope.img does not exist"
        }
        #expect(access(directory + "/nope.vmha", F_OK) != 0, "no metadata file for an image that is not there")
    }

    @Test func corruptOrForeignMetadataIsRefusedAndLeftAsItIs() async throws {
        let directory = NSTemporaryDirectory() + "vmha-corrupt-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let image = directory + "/image", metadata = directory + "/image.vmha"
        try Data(count: 16 << 20).write(to: URL(fileURLWithPath: image))
        let ring = try IOUring(logger: Logger(label: "test"))
        let configuration = LocalVolume.Configuration(name: "d0", imagePath: image, metadataPath: metadata)
        try await LocalVolume.open(configuration, ring: ring, logger: Logger(label: "test")).close()

        // Both superblock copies damaged: refused, never reset.
        var bytes = try Data(contentsOf: URL(fileURLWithPath: metadata))
        bytes[100] ^= 0xFF
        bytes[4096 + 100] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: metadata))
        await #expect { _ = try await LocalVolume.open(configuration, ring: ring, logger: Logger(label: "test")) } throws: { error in
            guard case VolumeError.metadata(let path, _) = error else { return false }
            return path == metadata
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: metadata)) == bytes, "the damaged file is left for an operator")

        // Someone else's file in its place: refused as foreign.
        try Data(repeating: 0x42, count: 64 << 10).write(to: URL(fileURLWithPath: metadata))
        await #expect { _ = try await LocalVolume.open(configuration, ring: ring, logger: Logger(label: "test")) } throws: { error in
            "\(error)".contains(metadata)
        }
        await ring.shutdown()
    }

    /// The image lives on an 8 MiB tmpfs: writes past the space fail with ENOSPC (which NBD
    /// passes to the guest), the volume keeps serving, and everything written before is intact.
    @Test func aFullDiskFailsTheWriteWithENOSPCAndKeepsServing() async throws {
        let directory = NSTemporaryDirectory() + "vmha-full-\(UUID().uuidString.prefix(8))"
        let mount = directory + "/small"
        try FileManager.default.createDirectory(atPath: mount, withIntermediateDirectories: true)
        try Syscall.call("mount") { Glibc.mount("tmpfs", mount, "tmpfs", 0, "size=8m") }
        defer {
            umount2(mount, Int32(MNT_DETACH))
            try? FileManager.default.removeItem(atPath: directory)
        }
        let image = mount + "/image"
        let fd = try FileDescriptor.open(image, .readWrite, options: [.create], permissions: [.ownerReadWrite])
        try Syscall.call("ftruncate") { ftruncate(fd.rawValue, 64 << 20) }  // sparse: 64 MiB on an 8 MiB filesystem
        try fd.close()

        let ring = try IOUring(logger: Logger(label: "test"))
        let volume = try await LocalVolume.open(
            .init(name: "d0", imagePath: image, metadataPath: directory + "/image.vmha"), ring: ring, logger: Logger(label: "test"))
        var written = 0
        var failure: VolumeError?
        for index in 0..<16 {
            do {
                try await volume.writePattern(UInt8(index + 1), at: UInt64(index) << 20, count: 1 << 20)
                written += 1
            } catch {
                failure = error
                break
            }
        }
        let error = try #require(failure, "8 MiB of tmpfs cannot hold 16 MiB")
        #expect(error.errno == .noSpace, "\(error)")
        #expect(written >= 4)
        // Everything acknowledged before is intact, and the volume still serves.
        for index in 0..<written {
            let bytes = try await volume.readBytes(at: UInt64(index) << 20, count: 1 << 20)
            #expect(bytes.allSatisfy { $0 == UInt8(index + 1) }, "block \(index) changed")
        }
        // Freeing space (a guest's TRIM) makes writes work again.
        try await volume.trim(offset: 0, length: 4 << 20)
        try await volume.writePattern(0x77, at: 40 << 20, count: 1 << 20)
        try await volume.close()
        await ring.shutdown()
    }
}

/// More extents written than the activity log keeps hot, many writes at once: extents are evicted
/// and re-activated all the time, and no write may wait forever (a leaked extent reference once
/// stalled a full resync after the first 257 extents).
@Suite("Activity log under eviction")
struct ActivityLogEvictionTests {
    @Test(.timeLimit(.minutes(1))) func concurrentWritesOverMoreExtentsThanTheLogHoldsAllComplete() async throws {
        let directory = NSTemporaryDirectory() + "vmha-evict-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let image = directory + "/image"
        let fd = try FileDescriptor.open(image, .readWrite, options: [.create], permissions: [.ownerReadWrite])
        try Syscall.call("ftruncate") { ftruncate(fd.rawValue, 512 << 20) }
        try fd.close()
        let ring = try IOUring(logger: Logger(label: "test"))
        var configuration = LocalVolume.Configuration(name: "d0", imagePath: image, metadataPath: directory + "/image.vmha")
        configuration.activityLog.hotExtentLimit = 16
        let volume = try await LocalVolume.open(configuration, ring: ring, logger: Logger(label: "test"))
        // 128 extents of 4 MiB, 3 passes, 16 writers; a write straddling two extents every time.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<16 {
                group.addTask {
                    for pass in 0..<3 {
                        for extent in stride(from: writer, to: 128, by: 16) {
                            let offset = UInt64(extent) << 22 + (pass == 1 ? (4 << 20) - 2048 : 0)
                            try await volume.writePattern(UInt8(truncatingIfNeeded: extent + pass), at: min(offset, (512 << 20) - 4096), count: 4096)
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(await volume.hotExtents <= 16)
        try await volume.close()
        await ring.shutdown()
    }
}

extension LocalVolume {
    /// Test helpers isolated to the volume, so their buffers never cross an isolation boundary.
    func writePattern(_ byte: UInt8, at offset: UInt64, count: Int) async throws(VolumeError) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 4096)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: byte)
        try await write(UnsafeRawBufferPointer(buffer), at: offset, fua: false)
    }

    func readBytes(at offset: UInt64, count: Int) async throws(VolumeError) -> [UInt8] {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 4096)
        defer { buffer.deallocate() }
        try await read(into: buffer, at: offset)
        return Array(buffer)
    }
}
