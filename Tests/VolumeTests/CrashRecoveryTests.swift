import Foundation
import Harness
import Logging
import SystemPackage
import Testing
import Uring
@testable import Volume

#if canImport(Glibc)
import Glibc
#endif

@Suite("Crash recovery", .serialized)
struct CrashRecoveryTests {
    /// kill -9 of vmhad while fio writes: after restart, the bitmap (with the activity log merged)
    /// covers every 4 KiB block that differs from a copy of the image taken at the sync point.
    @Test func bitmapCoversEveryChangedBlockAfterKill9() async throws {
        let fixture = try ExportFixture(size: 256 << 20)
        // A random baseline, so the comparison is byte for byte against real data.
        try run("/usr/bin/dd", ["if=/dev/urandom", "of=\(fixture.imagePath)", "bs=1M", "count=256", "status=none"])
        let baseline = fixture.directory + "/baseline"
        try run("/usr/bin/cp", [fixture.imagePath, baseline])

        let vmhad = Process()
        vmhad.executableURL = URL(fileURLWithPath: try builtProduct("vmhad"))
        // 16 hot extents of 4 MiB over a 256 MiB image: the log evicts constantly, so the
        // bitmap-before-eviction ordering is exercised, not just the hot set.
        vmhad.arguments = [
            "--export", "\(fixture.name):\(fixture.imagePath):\(fixture.socketPath):\(fixture.metadataPath)",
            "--al-extents", "16", "--socket-mode", "600",
        ]
        vmhad.standardError = FileHandle.nullDevice
        try vmhad.run()
        defer { if vmhad.isRunning { kill(vmhad.processIdentifier, SIGKILL) } }
        for _ in 0..<200 where access(fixture.socketPath, F_OK) != 0 { try await Task.sleep(for: .milliseconds(10)) }

        // Phase 1: all over the image, evicting extents all the time.
        _ = try await runDetached("/usr/bin/fio", [
            "--name=spread", "--ioengine=nbd", "--uri=\(fixture.uri)", "--rw=randwrite", "--bsrange=4k-64k",
            "--iodepth=16", "--size=256M", "--time_based", "--runtime=1", "--verify_state_save=0",
        ])
        // Phase 2: inside two extents that stay hot, so their bits exist only in memory and in the
        // activity log when the daemon dies — the case the log's recovery exists for.
        let fio = Task {
            // fio fails once its server is killed: that is the point.
            try? await runDetached("/usr/bin/fio", [
                "--name=hot", "--ioengine=nbd", "--uri=\(fixture.uri)", "--rw=randwrite", "--bsrange=4k-64k",
                "--iodepth=16", "--offset=64M", "--size=8M", "--time_based", "--runtime=20", "--verify_state_save=0",
            ])
        }
        try await Task.sleep(for: .milliseconds(1000))
        kill(vmhad.processIdentifier, SIGKILL)
        vmhad.waitUntilExit()
        _ = await fio.value

        // Restart: the volume reopens from the same files.
        let ring = try IOUring(logger: Logger(label: "test"))
        var configuration = fixture.configuration
        configuration.activityLog.hotExtentLimit = 16
        let volume = try await LocalVolume.open(configuration, ring: ring, logger: Logger(label: "test"))
        let report = volume.openReport
        let bitmap = await volume.dirtyBitmap()
        try await volume.close()
        await ring.shutdown()
        #expect(report.uncleanShutdown)
        #expect(report.recoveredExtents > 0)

        let image = try FileHandle(forReadingFrom: URL(fileURLWithPath: fixture.imagePath))
        let copy = try FileHandle(forReadingFrom: URL(fileURLWithPath: baseline))
        defer { try? image.close(); try? copy.close() }
        var changedBlocks = 0, uncovered = 0
        var offset: UInt64 = 0
        while let a = try image.read(upToCount: 1 << 20), !a.isEmpty, let b = try copy.read(upToCount: 1 << 20) {
            for block in stride(from: 0, to: a.count, by: 4096) {
                let end = min(block + 4096, a.count)
                if a[a.startIndex + block..<a.startIndex + end] != b[b.startIndex + block..<b.startIndex + end] {
                    changedBlocks += 1
                    if !(try bitmap.isSet(offset: offset + UInt64(block), length: UInt64(end - block))) { uncovered += 1 }
                }
            }
            offset += UInt64(a.count)
        }
        #expect(changedBlocks > 100, "fio must have changed the image before the kill")
        #expect(uncovered == 0, "\(uncovered) of \(changedBlocks) changed blocks are not in the bitmap")
    }
}
