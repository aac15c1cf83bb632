import Foundation
import Harness
import Testing

/// Replication between two real vmhad processes in two network namespaces over a veth link,
/// written to by real NBD clients (fio, qemu-io). Nothing is mocked.
@Suite("Two-host replication", .serialized)
struct TwoHostReplicationTests {
    @Test func writesReplicateSurviveAPeerCrashAndResyncIncrementally() async throws {
        let hosts = try TwoHostFixture(sizeMiB: 128)
        let replica = try hosts.startReplica()
        let primary = try hosts.startPrimary()
        try await hosts.waitForSocket()
        // First contact: the fresh replica gets a full sync.
        try await primary.waitForLog("resync finished")
        _ = replica

        // Verified writes while connected.
        try await Shell.run(async: [
            "fio", "--name=verify", "--ioengine=nbd", "--uri=\(hosts.uri)", "--rw=randwrite", "--bs=4k", "--iodepth=16",
            "--size=16M", "--verify=crc32c", "--verify_fatal=1", "--verify_state_save=0",
        ])

        // The peer dies hard in the middle of writing; the guest keeps writing without errors.
        let writer = Task {
            try await Shell.run(async: [
                "fio", "--name=away", "--ioengine=nbd", "--uri=\(hosts.uri)", "--rw=randwrite", "--bs=4k", "--iodepth=16",
                "--offset=64M", "--size=8M", "--time_based", "--runtime=4", "--output-format=json", "--verify_state_save=0",
            ])
        }
        try await Task.sleep(for: .milliseconds(800))
        await replica.stop(SIGKILL)
        let report = try await writer.value
        // fio may print notes before its JSON.
        let json = try JSONSerialization.jsonObject(with: Data(report[report.firstIndex(of: "{")!...].utf8)) as! [String: Any]
        let job = (json["jobs"] as! [[String: Any]])[0]
        let write = job["write"] as! [String: Any]
        let maxLatencySeconds = ((write["clat_ns"] as! [String: Any])["max"] as! NSNumber).doubleValue / 1e9
        #expect((job["error"] as! NSNumber).intValue == 0, "the guest saw an I/O error")
        #expect(maxLatencySeconds < 1 + 1.5, "a write stalled \(maxLatencySeconds) s, longer than the peer timeout (1 s) allows")

        // The peer returns: only what changed while it was away crosses the wire.
        _ = try hosts.startReplica()
        try await primary.waitForLog("resync finished", count: 2)
        let line = primary.lines(containing: "resync finished").last!
        let resynced = UInt64(logField(line, "bytes") ?? "") ?? 0
        let sent = UInt64(logField(line, "sent") ?? "") ?? 0
        #expect(resynced > 0)
        #expect(resynced <= 8 << 20 + 128 << 10, "resynced \(resynced) bytes for 8 MiB of writes")
        #expect(sent <= resynced)

        for daemon in hosts.daemons { await daemon.stop() }
        #expect(try hosts.sha256(hosts.imageA) == hosts.sha256(hosts.imageB))
    }

    @Test func aResyncBrokenByACrashResumesWhereItStopped() async throws {
        let hosts = try TwoHostFixture(sizeMiB: 256)
        let replica = try hosts.startReplica()
        // 64 MiB/s: the full sync of 256 MiB takes about 4 s; the replica dies in the middle.
        let primary = try hosts.startPrimary(extra: ["--resync-max-rate", "\(64 << 20)"])
        try await primary.waitForLog("resync started")
        try await Task.sleep(for: .milliseconds(2000))
        await replica.stop(SIGKILL)
        try await primary.waitForLog("peer link down")
        _ = try hosts.startReplica()
        try await primary.waitForLog("resync finished")
        let started = primary.lines(containing: "resync started")
        #expect(started.count == 2)
        let second = UInt64(logField(started.last!, "bytes") ?? "") ?? .max
        #expect(second < 224 << 20, "the second resync must resume, not start over: \(second) bytes")
        #expect(second > 0)
        for daemon in hosts.daemons { await daemon.stop() }
        #expect(try hosts.sha256(hosts.imageA) == hosts.sha256(hosts.imageB))
    }

    @Test func checksumFullSyncOfIdenticalImagesMovesAlmostNothing() async throws {
        let hosts = try TwoHostFixture(sizeMiB: 64)
        try Shell.run(["cp", hosts.imageA, hosts.imageB])
        // One block differs: exactly that block must travel.
        try Shell.run(["dd", "if=/dev/urandom", "of=\(hosts.imageB)", "bs=4k", "count=1", "seek=1000", "conv=notrunc", "status=none"])
        _ = try hosts.startReplica()
        let primary = try hosts.startPrimary(extra: ["--checksum-resync"])
        try await primary.waitForLog("resync finished")
        let line = primary.lines(containing: "resync finished").last!
        let sent = UInt64(logField(line, "sent") ?? "") ?? .max
        #expect(logField(line, "method") == "checksum")
        #expect(sent >= 4 << 20, "the differing 4 MiB resync block must be sent")
        #expect(sent < 4 << 20 + 64 << 10, "\(sent) bytes sent to sync identical 64 MiB images")
        for daemon in hosts.daemons { await daemon.stop() }
        #expect(try hosts.sha256(hosts.imageA) == hosts.sha256(hosts.imageB))
    }

    /// A sparse 1 GiB image holding 9 MiB of data (issue 18): the full sync reads only the data
    /// (`SEEK_DATA`; holes are one zeroes frame each, never read), the replica ends identical —
    /// including 16 MiB of stale data it held in one of A's holes, now punched — and as sparse.
    @Test func aSparseImageFullSyncsOnlyItsDataAndStaysSparse() async throws {
        let hosts = try TwoHostFixture(sizeMiB: 1024, randomContent: false)
        for (seekMiB, countMiB) in [(100, 8), (1023, 1)] {
            try Shell.run(["dd", "if=/dev/urandom", "of=\(hosts.imageA)", "bs=1M", "count=\(countMiB)", "seek=\(seekMiB)", "conv=notrunc", "status=none"])
        }
        try Shell.run(["dd", "if=/dev/urandom", "of=\(hosts.imageB)", "bs=1M", "count=16", "seek=500", "conv=notrunc", "status=none"])
        _ = try hosts.startReplica()
        let primary = try hosts.startPrimary()
        try await primary.waitForLog("resync finished")
        let line = primary.lines(containing: "resync finished").last!
        let read = UInt64(logField(line, "read") ?? "") ?? .max
        let sent = UInt64(logField(line, "sent") ?? "") ?? .max
        #expect(logField(line, "bytes") == "\(1 << 30)", "\(line)")
        // The data, rounded out to the 4 MiB resync blocks it falls in.
        #expect(read >= 9 << 20 && read <= 16 << 20, "\(read) bytes read for 9 MiB of data: \(line)")
        #expect(sent >= 9 << 20 && sent <= 16 << 20 + 64 << 10, "\(sent) bytes sent: \(line)")
        for daemon in hosts.daemons { await daemon.stop() }
        #expect(try hosts.sha256(hosts.imageA) == hosts.sha256(hosts.imageB))
        let allocated = try Shell.run(["du", "-k", "--", hosts.imageB]).split(separator: "\t").first.flatMap { Int($0) } ?? -1
        #expect(allocated >= 9 << 10 && allocated <= 20 << 10, "the replica holds \(allocated) KiB")
    }

    /// A 4 KiB hole inside a 64 KiB grain of data goes with the data: every grain is cleared and
    /// the primary ends with nothing dirty (a hole sent on its own left its grain dirty for ever:
    /// a switchover then waited for a peer "in sync" that never came — seen in FailoverTests).
    @Test func aSmallHoleInsideDataLeavesNothingDirty() async throws {
        let hosts = try TwoHostFixture(sizeMiB: 16, randomContent: false)
        for (seekKiB, countKiB) in [(4, 4092), (8192, 4)] {
            try Shell.run(["dd", "if=/dev/urandom", "of=\(hosts.imageA)", "bs=1K", "count=\(countKiB)", "seek=\(seekKiB)", "conv=notrunc", "status=none"])
        }
        _ = try hosts.startReplica()
        let primary = try hosts.startPrimary()
        try await primary.waitForLog("resync finished")
        await primary.stop()
        let closed = primary.lines(containing: "volume closed cleanly").last ?? ""
        #expect(logField(closed, "dirty_bytes") == "0", "\(primary.lines(containing: "resync finished")) \(closed)")
        for daemon in hosts.daemons { await daemon.stop() }
        #expect(try hosts.sha256(hosts.imageA) == hosts.sha256(hosts.imageB))
    }

    /// The checksum pass over two identical sparse images reads only the data on the source (a
    /// block all hole is digested as zeroes, unread; the target does the same) and sends digests.
    @Test func aChecksumFullSyncOfSparseImagesReadsOnlyTheData() async throws {
        let hosts = try TwoHostFixture(sizeMiB: 1024, randomContent: false)
        try Shell.run(["dd", "if=/dev/urandom", "of=\(hosts.imageA)", "bs=1M", "count=8", "seek=100", "conv=notrunc", "status=none"])
        try Shell.run(["cp", "--sparse=always", hosts.imageA, hosts.imageB])
        _ = try hosts.startReplica()
        let primary = try hosts.startPrimary(extra: ["--checksum-resync"])
        try await primary.waitForLog("resync finished")
        let line = primary.lines(containing: "resync finished").last!
        let read = UInt64(logField(line, "read") ?? "") ?? .max
        let sent = UInt64(logField(line, "sent") ?? "") ?? .max
        #expect(logField(line, "method") == "checksum", "\(line)")
        #expect(read >= 8 << 20 && read <= 12 << 20, "\(read) bytes read for 8 MiB of data: \(line)")
        #expect(sent < 64 << 10, "\(sent) bytes sent for identical images: \(line)")
        for daemon in hosts.daemons { await daemon.stop() }
        #expect(try hosts.sha256(hosts.imageA) == hosts.sha256(hosts.imageB))
    }

    /// Images of different sizes: the link is refused with one line naming both sizes, on both
    /// hosts, and the replica is untouched (issue 18).
    @Test func aSizeMismatchNamesBothSizes() async throws {
        let hosts = try TwoHostFixture(sizeMiB: 16)
        try Shell.run(["truncate", "-s", "\(24 << 20)", hosts.imageB])
        let before = try hosts.sha256(hosts.imageB)
        let replica = try hosts.startReplica()
        let primary = try hosts.startPrimary()
        try await replica.waitForLog("geometry mismatch")
        try await primary.waitForLog("volume geometry mismatch")
        let sizes = "the primary's image is \(16 << 20) bytes (grain 65536), this replica's \(24 << 20) bytes (grain 65536) at \(hosts.imageB)"
        #expect(replica.lines(containing: sizes).count >= 1, "\(replica.lines(containing: "mismatch"))")
        #expect(primary.lines(containing: sizes).count >= 1, "\(primary.lines(containing: "mismatch"))")
        for daemon in hosts.daemons { await daemon.stop() }
        #expect(try hosts.sha256(hosts.imageB) == before)
        #expect(primary.lines(containing: "resync started").isEmpty)
    }

    /// TRIM and WRITE_ZEROES without NO_HOLE punch holes on both replicas (issue 18): both stay
    /// as sparse as each other and identical.
    @Test func trimAndZeroesKeepTheReplicaSparse() async throws {
        let hosts = try TwoHostFixture(sizeMiB: 64)
        _ = try hosts.startReplica()
        let primary = try hosts.startPrimary()
        try await primary.waitForLog("resync finished")
        try await Shell.run(async: ["qemu-io", "-f", "raw", "-c", "discard 8M 16M", "-c", "write -z -u 32M 8M", "-c", "flush", hosts.uri])
        for daemon in hosts.daemons { await daemon.stop() }
        #expect(try hosts.sha256(hosts.imageA) == hosts.sha256(hosts.imageB))
        func kib(_ path: String) throws -> Int { Int(try Shell.run(["du", "-k", "--", path]).split(separator: "\t").first ?? "") ?? -1 }
        let a = try kib(hosts.imageA), b = try kib(hosts.imageB)
        #expect(a <= 41 << 10 && b <= 41 << 10, "24 MiB of 64 punched: A holds \(a) KiB, B \(b) KiB")
    }

    @Test func aWrongKeyIsRefusedAndTheReplicaIsUntouched() async throws {
        let hosts = try TwoHostFixture(sizeMiB: 16)
        let wrongKey = hosts.directory + "/wrong.key"
        try Data((0..<32).map { _ in UInt8.random(in: 0...255) }).write(to: URL(fileURLWithPath: wrongKey))
        let before = try hosts.sha256(hosts.imageB)
        let replica = try hosts.startReplica(key: wrongKey)
        let primary = try hosts.startPrimary()
        try await hosts.waitForSocket()
        try await primary.waitForLog("handshake failed")
        try await replica.waitForLog("replication peer refused")
        try await Shell.run(async: ["qemu-io", "-f", "raw", "-c", "write -P 0x42 0 1M", hosts.uri])
        for daemon in hosts.daemons { await daemon.stop() }
        #expect(try hosts.sha256(hosts.imageB) == before, "nothing may reach a replica before authentication")
        #expect(primary.lines(containing: "resync started").isEmpty)
    }

    @Test func garbageOnTheReplicationPortIsDroppedAndTheRealPeerStillConnects() async throws {
        let hosts = try TwoHostFixture(sizeMiB: 16, randomContent: false)
        let replica = try hosts.startReplica()
        try await replica.waitForLog("replication listening")
        // A stranger sends random bytes, then a syntactically valid frame header with a bad CRC.
        let script = """
            import os, socket
            for payload in (os.urandom(4096), b"VMHP\\x00\\x01\\x00\\x01" + b"\\x00" * 24):
                s = socket.create_connection(("\(hosts.network.addresses.1)", \(TwoHostFixture.port)))
                s.sendall(payload)
                s.settimeout(5)
                try:
                    while s.recv(4096): pass
                except OSError: pass
                s.close()
            """
        try await hosts.network.run(in: 0, ["python3", "-c", script])
        try await replica.waitForLog("replication peer refused", count: 2)
        let primary = try hosts.startPrimary()
        try await primary.waitForLog("resync finished")
        #expect(replica.process.isRunning)
    }

    @Test func splitBrainIsReportedNotMerged() async throws {
        let hosts = try TwoHostFixture(sizeMiB: 16, randomContent: false)
        try await hosts.makeSplitBrain(onA: "write -P 0xaa 2M 64k", onB: "write -P 0xbb 1M 64k")

        // Reconnected: reported, and neither side's data is overwritten.
        _ = try hosts.startReplica()
        let reconnected = try hosts.startPrimary()
        try await reconnected.waitForLog("split brain")
        try await Task.sleep(for: .milliseconds(500))
        for daemon in hosts.daemons { await daemon.stop() }
        #expect(reconnected.lines(containing: "resync started").isEmpty)
        let b = try FileHandle(forReadingFrom: URL(fileURLWithPath: hosts.imageB))
        try b.seek(toOffset: 1 << 20)
        #expect(try b.read(upToCount: 4096)!.allSatisfy { $0 == 0xbb }, "B's own writes must survive")
        try b.close()
    }
}
