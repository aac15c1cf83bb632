import Foundation
import Testing
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

    /// An incoming live migration's export: guest writes wait unapplied and unanswered at the gate
    /// while reads are served; opened, they run; refused, they fail and change nothing.
    @Test(.timeLimit(.minutes(1))) func guestChangeGateHoldsThenReleasesOrRefuses() async throws {
        let fixture = try ExportFixture(size: 16 << 20)
        try await fixture.serve { volume in
            let target = "nbd+unix:///\(fixture.name)?socket=\(fixture.socketPath)"
            func image(at offset: UInt64) throws -> UInt8 {
                let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: fixture.imagePath))
                defer { try? handle.close() }
                try handle.seek(toOffset: offset)
                return try handle.read(upToCount: 1)?.first ?? 0
            }
            func heldCount(_ n: Int) async throws {
                for _ in 0..<200 where await volume.heldWriteCount != n { try await Task.sleep(for: .milliseconds(10)) }
                #expect(await volume.heldWriteCount == n)
            }

            await volume.setGuestChangeGate(.held)
            async let released = runDetached("/usr/bin/qemu-io", ["-f", "raw", "-c", "write -P 0x5a 0 64k", target])
            try await heldCount(1)
            _ = try await runDetached("/usr/bin/qemu-io", ["-r", "-f", "raw", "-c", "read -P 0 0 64k", target])  // read-only: no flush at exit
            #expect(try image(at: 0) == 0, "a held write is not applied")
            await volume.setGuestChangeGate(.open)
            _ = try await released
            #expect(try image(at: 0) == 0x5a)

            await volume.setGuestChangeGate(.held)
            async let refused = runDetached("/usr/bin/qemu-io", ["-f", "raw", "-c", "write -P 0x77 1M 64k", target])
            try await heldCount(1)
            await volume.setGuestChangeGate(.refused)
            let output = (try? await refused) ?? "failed"
            #expect(!output.contains("wrote"), "the refused write failed: \(output)")
            #expect(try image(at: 1 << 20) == 0, "a refused write changed nothing")
        }
    }
}
