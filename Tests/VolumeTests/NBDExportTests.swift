import Foundation
import Testing
import Uring
@testable import Volume

/// The export end to end: real clients (fio's nbd engine via libnbd, qemu-img, qemu-io) against
/// the real server on a UNIX socket, writing a real file through io_uring.
@Suite("NBD export", .serialized)
struct NBDExportTests {
    @Test func fioVerifiesRandomWritesOnARawExport() async throws {
        let fixture = try ExportFixture(size: 64 << 20)
        let dirty = try await fixture.serve { volume in
            _ = try await runDetached("/usr/bin/fio", [
                "--name=verify", "--ioengine=nbd", "--uri=\(fixture.uri)", "--rw=randwrite", "--bs=4k",
                "--iodepth=16", "--size=32M", "--verify=crc32c", "--verify_fatal=1", "--do_verify=1", "--verify_state_save=0",
            ])
            _ = try await runDetached("/usr/bin/fio", [
                "--name=mixed", "--ioengine=nbd", "--uri=\(fixture.uri)", "--rw=randrw", "--bsrange=4k-1M",
                "--iodepth=8", "--size=48M", "--verify=crc32c", "--verify_fatal=1", "--verify_state_save=0",
            ])
            return await volume.dirtyBytes
        }
        // No peer: every written grain is dirty.
        #expect(dirty >= 32 << 20)
    }

    @Test func qcow2ContainerIsExportedWithRoomToAllocate() async throws {
        let fixture = try ExportFixture(size: 0, qcow2VirtualSize: 64 << 20)
        try await fixture.serve { volume in
            #expect(volume.format == .qcow2)
            #expect(volume.size > 64 << 20)
            // QEMU's qcow2 driver on top of our export: write 48 MiB of patterns, then check.
            let target = "json:{\"driver\":\"qcow2\",\"file\":{\"driver\":\"nbd\",\"server\":{\"type\":\"unix\",\"path\":\"\(fixture.socketPath)\"},\"export\":\"\(fixture.name)\"}}"
            _ = try await runDetached("/usr/bin/qemu-io", ["-c", "write -P 0x5a 0 48M", "-c", "read -P 0x5a 0 48M", target])
            _ = try await runDetached("/usr/bin/qemu-img", ["check", target])
        }
        // The container file itself is a clean qcow2 image afterwards.
        _ = try run("/usr/bin/qemu-img", ["check", "-q", fixture.imagePath])
    }

    @Test func metadataSurvivesCleanCloseAndReopens() async throws {
        let fixture = try ExportFixture(size: 16 << 20)
        try await fixture.serve { volume in
            _ = try await runDetached("/usr/bin/qemu-io", ["-f", "raw", "-c", "write -P 1 1M 64k", fixture.uri])
            #expect(await volume.dirtyBytes == 64 << 10)
        }
        try await fixture.serve { volume in
            #expect(volume.openReport.createdMetadata == false)
            #expect(volume.openReport.uncleanShutdown == false)
            #expect(await volume.dirtyBytes == 64 << 10)
            let bitmap = await volume.dirtyBitmap()
            let written = try bitmap.isSet(offset: 1 << 20, length: 64 << 10)
            #expect(written)
        }
    }
}
