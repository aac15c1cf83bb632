import Cluster
import Foundation
import Harness
import Libvirt
import Logging
import Testing

#if canImport(FoundationXML)
import FoundationXML
#endif

/// Issue 18: a qcow2 disk and a VM of two disks through failover, resync and failback. vmhad
/// replicates the qcow2 container byte for byte; QEMU's qcow2 driver runs on the NBD export.
@Suite("qcow2 and multi-disk VMs on simulated hosts", .serialized)
struct DiskFormatTests {
    let logger = Logger(label: "vmha.tests.ha.disks")

    /// A records guest on one qcow2 disk: redundant; A killed → B runs it with every acknowledged
    /// record; A back → incremental resync; `vmha migrate` back to A; guest and daemons stopped
    /// cleanly → the two containers are byte-identical and consistent qcow2 images.
    @Test(.enabled(if: hostsAvailable), .timeLimit(.minutes(10)))
    func qcow2FailoverResyncFailbackLeavesIdenticalContainers() async throws {
        try await HACluster.test(logger: logger, make: {
            try HACluster(
                cluster: $0, guest: $1, vmhad: $2, vmha: $3,
                vms: [.init(name: "vm1", workload: .records, memoryMiB: 192, disks: [.init(format: "qcow2", bytes: 64 << 20)])])
        }) { ha, watch in
            let (a, serial) = (ha.hostA, ha.serial)
            let started = ContinuousClock.now
            try await ha.startAndWaitUntilRedundant()
            print("QCOW2: redundant and writing \(started.duration(to: .now)) after start")
            let disks = try await Self.liveDisks(ha, host: 0)
            #expect(disks.map(\.format) == ["qcow2"], "QEMU's qcow2 driver on the export: \(disks)")
            #expect(disks.map(\.export) == ["vm1-disk0"])
            // vmhad extends the container sparsely to its export size (ImageFormat): the bound a
            // resync must stay well below to be incremental.
            let containerBytes = try Self.fileSize(ha.imagePath(host: 0))
            let replicaBytes = try Self.fileSize(ha.imagePath(host: 1))
            #expect(containerBytes > 64 << 20 && containerBytes == replicaBytes, "both containers extended alike")
            // Past record 16 the guest has filled its first 64 KiB cluster: QEMU allocated another
            // (L2 and refcount updates on the export) before the crash.
            try await serial.waitForACK(after: 20, timeout: .seconds(30))

            // A dies hard; B takes over with the witness's vote.
            let killedAt = try await ha.crashHostA(watch: watch)
            let acked = try #require(serial.lastACK())
            try await HACluster.waitUntil("vm1 ALONE on B", timeout: .seconds(30)) { ha.vm(1)?.state == "ALONE" }
            let takeover = killedAt.duration(to: .now)
            try await serial.waitFor("VERIFY after failover", timeout: .seconds(60)) { _ in serial.verifySummaries().count == 2 }
            let onB = serial.verifySummaries()[1]
            print("QCOW2 FAILOVER: B runs vm1 \(takeover) after the kill, guest verified \(killedAt.duration(to: .now)) after; VERIFY ok=\(onB.ok) bad=\(onB.bad) last=\(onB.last), last ACK before the kill \(acked)")
            #expect(onB.bad == 0)
            #expect(onB.last >= acked, "every acknowledged record survived")
            try await serial.waitForACK(after: onB.last + 5, timeout: .seconds(30))

            // A returns: SECOND, incremental resync of what B wrote (and A's activity-log extents).
            let (redundantAgain, resynced) = try await Self.returnHostA(ha)
            print("QCOW2 RESYNC: redundant again \(redundantAgain) after A's vmhad restart; \(resynced) of a \(containerBytes)-byte container")
            let bytes = try #require(resynced["vm1-disk0"])
            #expect(bytes > 0 && bytes < containerBytes, "incremental, not full: \(bytes)")

            // Failback to A.
            let migrateAt = ContinuousClock.now
            let migrate = try ha.vmhaCommand(1, ["migrate", "vm1", "--to", a.name])
            #expect(migrate.status == 0, "\(migrate.output)")
            try await HACluster.waitUntil("vm1 PRIM on A", timeout: .seconds(60)) { ha.vm(0)?.state == "PRIM" && ha.vm(1)?.state == "SECOND" }
            let beforeFailback = try #require(serial.lastACK())
            try await serial.waitFor("VERIFY after failback", timeout: .seconds(60)) { _ in serial.verifySummaries().count == 3 }
            let onA = serial.verifySummaries()[2]
            print("QCOW2 FAILBACK: guest verified on A \(migrateAt.duration(to: .now)) after vmha migrate; VERIFY ok=\(onA.ok) bad=\(onA.bad) last=\(onA.last)")
            #expect(onA.bad == 0 && onA.last >= beforeFailback)
            try await serial.waitForACK(after: onA.last + 3, timeout: .seconds(30))
            try await HACluster.waitUntil("B UpToDate after failback", timeout: .seconds(30)) { ha.vm(1)?.replica == "upToDate" }

            try await Self.stopCleanlyAndCompare(ha, runningOn: 0, disks: 1, logger: logger)
        }
    }

    /// A records guest with a raw vda and a qcow2 vdb, each written by its own writer: the XML
    /// rewrite keeps each disk's target, order and format on its own export on both hosts; after
    /// a failover every acknowledged record of both disks is there; both disks resync
    /// incrementally when A returns, and end byte-identical.
    @Test(.enabled(if: hostsAvailable), .timeLimit(.minutes(10)))
    func twoDisksFailOverAndResyncEach() async throws {
        try await HACluster.test(logger: logger, make: {
            try HACluster(
                cluster: $0, guest: $1, vmhad: $2, vmha: $3,
                vms: [
                    .init(
                        name: "vm1", workload: .records, memoryMiB: 192,
                        disks: [.init(format: "raw", bytes: 64 << 20), .init(format: "qcow2", bytes: 64 << 20)])
                ])
        }) { ha, watch in
            let serial = ha.serial
            let started = ContinuousClock.now
            try await ha.startAndWaitUntilRedundant()
            try await serial.waitForACK(after: 20, timeout: .seconds(30))
            // vdb (qcow2) past its first 64 KiB cluster too, as in the test above.
            try await serial.waitForACK(after: 20, tag: "2", timeout: .seconds(30))
            print("TWO DISKS: redundant and writing both disks \(started.duration(to: .now)) after start")
            try await Self.expectRewrittenDisks(ha, host: 0)

            let killedAt = try await ha.crashHostA(watch: watch)
            let acked = (try #require(serial.lastACK()), try #require(serial.lastACK(tag: "2")))
            try await HACluster.waitUntil("vm1 ALONE on B", timeout: .seconds(30)) { ha.vm(1)?.state == "ALONE" }
            let takeover = killedAt.duration(to: .now)
            try await serial.waitFor("both disks' VERIFY after failover", timeout: .seconds(60)) { _ in
                serial.verifySummaries().count == 2 && serial.verifySummaries(tag: "2").count == 2
            }
            let (vda, vdb) = (serial.verifySummaries()[1], serial.verifySummaries(tag: "2")[1])
            print("TWO DISKS FAILOVER: B runs vm1 \(takeover) after the kill, both disks verified \(killedAt.duration(to: .now)) after; vda ok=\(vda.ok) bad=\(vda.bad) last=\(vda.last) (last ACK \(acked.0)), vdb ok=\(vdb.ok) bad=\(vdb.bad) last=\(vdb.last) (last ACK2 \(acked.1))")
            #expect(vda.bad == 0 && vda.last >= acked.0, "every acknowledged vda record survived")
            #expect(vdb.bad == 0 && vdb.last >= acked.1, "every acknowledged vdb record survived")
            try await Self.expectRewrittenDisks(ha, host: 1)
            try await serial.waitForACK(after: vda.last + 5, timeout: .seconds(30))
            try await serial.waitForACK(after: vdb.last + 5, tag: "2", timeout: .seconds(30))

            let (redundantAgain, resynced) = try await Self.returnHostA(ha)
            print("TWO DISKS RESYNC: redundant again \(redundantAgain) after A's vmhad restart; resynced \(resynced)")
            for (j, volume) in ["vm1-disk0", "vm1-disk1"].enumerated() {
                let size = try Self.fileSize(ha.imagePath(host: 1, disk: j))
                let bytes = try #require(resynced[volume], "\(volume) resynced")
                #expect(bytes > 0 && bytes < size, "\(volume): incremental, not full: \(bytes) of \(size)")
            }

            try await Self.stopCleanlyAndCompare(ha, runningOn: 1, disks: 2, logger: logger)
        }
    }

    /// B's qcow2 created with 2 MiB clusters (A's has 64 KiB): another export size, so B refuses
    /// every connect and both hosts' volume status says why, with both sizes; the VM runs on A
    /// without a replica (the witness holds the Inconsistent B outdated), B never UpToDate.
    @Test(.enabled(if: hostsAvailable), .timeLimit(.minutes(5)))
    func secondaryQcow2OfOtherClusterSizeIsRefused() async throws {
        try await HACluster.test(logger: logger, make: {
            let ha = try HACluster(
                cluster: $0, guest: $1, vmhad: $2, vmha: $3,
                vms: [.init(name: "vm1", workload: .records, memoryMiB: 192, disks: [.init(format: "qcow2", bytes: 64 << 20)])])
            let imageB = ha.imagePath(host: 1)
            try FileManager.default.removeItem(atPath: imageB)
            try Shell.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=2M", imageB, "64M"])
            return ha
        }) { ha, _ in
            try ha.startWitness()
            try ha.startDaemon(0)
            try ha.startDaemon(1)
            let figures = "volume vm1-disk0: the primary's image is 68485120 bytes (grain 65536), this replica's 111149056 bytes (grain 65536) at \(ha.imagePath(host: 1))"
            try await HACluster.waitUntil("the refusal in both hosts' status", timeout: .seconds(60)) {
                ha.vm(0)?.volumes.first?.lastError == "refused: peer said goodbye: volume geometry mismatch: \(figures)"
                    && ha.vm(1)?.volumes.first?.lastError == "refused: geometry mismatch: \(figures)"
            }
            try await ha.serial.waitForACK(after: 5, timeout: .seconds(60))
            print("MISMATCH: A \(ha.vm(0).map { "\($0.state)/\($0.replica) link \($0.volumes[0].link)" } ?? "-"), B \(ha.vm(1).map { "\($0.state)/\($0.replica) link \($0.volumes[0].link)" } ?? "-")")
            #expect(ha.vm(0)?.state == "PRIM" && ha.vm(1)?.state == "SECOND")
            #expect(ha.vm(1)?.replica == "inconsistent", "never synced")
            #expect(ha.vm(1)?.volumes.first?.link == "refused")
        }
    }

    // MARK: - Helpers

    struct LiveDisk: Equatable, CustomStringConvertible {
        var target: String, format: String, type: String, export: String, socket: String
        var description: String { "\(target) \(format) \(type) \(export)@\(socket)" }
    }

    /// The disks of vm1's live domain XML on one host, in document order (= the guest's order).
    static func liveDisks(_ ha: HACluster, host: Int) async throws -> [LiveDisk] {
        let connection = try await LibvirtConnection.open(uri: ha.cluster.hosts[host].uri, logger: Logger(label: "vmha.tests.ha.disks"))
        let text: String
        do {
            text = try await connection.domain(named: "vm1").xmlDescription()
            await connection.close()
        } catch {
            await connection.close()
            throw error
        }
        let document = try XMLDocument(xmlString: text)
        return try document.nodes(forXPath: "/domain/devices/disk").compactMap { $0 as? XMLElement }.map { disk in
            func attribute(_ path: String, _ name: String) throws -> String {
                (try disk.nodes(forXPath: path).first as? XMLElement)?.attribute(forName: name)?.stringValue ?? ""
            }
            return LiveDisk(
                target: try attribute("target", "dev"), format: try attribute("driver", "type"),
                type: disk.attribute(forName: "type")?.stringValue ?? "",
                export: try attribute("source", "name"), socket: try attribute("source/host", "socket"))
        }
    }

    /// vmhad's rewrite on this host: vda (raw) then vdb (qcow2), each an NBD source on its own
    /// export's socket in this host's socket directory.
    static func expectRewrittenDisks(_ ha: HACluster, host: Int) async throws {
        let disks = try await liveDisks(ha, host: host)
        let nbd = "\(ha.scratch)/\(ha.cluster.hosts[host].name)/nbd"
        let expected = [
            LiveDisk(target: "vda", format: "raw", type: "network", export: "vm1-disk0", socket: "\(nbd)/vm1-disk0.sock"),
            LiveDisk(target: "vdb", format: "qcow2", type: "network", export: "vm1-disk1", socket: "\(nbd)/vm1-disk1.sock"),
        ]
        print("LIVE DISKS on \(ha.cluster.hosts[host].name): \(disks)")
        #expect(disks == expected)
    }

    /// A returns as B's secondary: how long until both were UpToDate, and the bytes of each
    /// volume's resync on B since A's return (not B's initial full sync as target), from B's events.
    static func returnHostA(_ ha: HACluster) async throws -> (Duration, [String: UInt64]) {
        let since = try #require(try ha.events(1, since: 0).map(\.sequence).max())
        let redundantAgain = try await ha.returnHostAAsSecondary()
        var bytes: [String: UInt64] = [:]
        for event in try ha.events(1, since: since) {
            if case .resyncFinished(let volume, let total, _, _) = event.kind { bytes[volume] = total }
        }
        return (redundantAgain, bytes)
    }

    static func fileSize(_ path: String) throws -> UInt64 {
        try (FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.uint64Value ?? 0
    }

    /// The guest powers off (ACPI; vmhad leaves a guest that shut itself down down), both vmhad
    /// stop on SIGTERM with status 0; then each disk's two files are byte-identical and every
    /// qcow2 one passes `qemu-img check`.
    static func stopCleanlyAndCompare(_ ha: HACluster, runningOn host: Int, disks: Int, logger: Logger) async throws {
        let connection = try await LibvirtConnection.open(uri: ha.cluster.hosts[host].uri, logger: logger)
        let outcome: Domain.ShutdownOutcome
        do {
            outcome = try await connection.domain(named: "vm1").shutdown(timeout: .seconds(60))
            await connection.close()
        } catch {
            await connection.close()
            throw error
        }
        #expect(outcome == .graceful, "the guest powered off by itself: \(outcome)")
        #expect(ha.serial.lines().contains("VMHA POWEROFF"), "by the ACPI button (GuestInit)")
        await ha.stopAll()
        for (i, daemon) in ha.daemons.enumerated() {
            #expect(daemon?.process.terminationStatus == 0, "vmhad on \(ha.cluster.hosts[i].name) stopped cleanly")
        }
        for j in 0..<disks {
            let (pathA, pathB) = (ha.imagePath(host: 0, disk: j), ha.imagePath(host: 1, disk: j))
            let sums = try [pathA, pathB].map { String(try Shell.run(["sha256sum", $0]).prefix(64)) }
            print("DISK \(j): sha256 \(sums[0]) on A, \(sums[1]) on B (\(try fileSize(pathA)) bytes)")
            #expect(sums[0] == sums[1], "disk \(j) byte-identical on A and B")
            guard pathA.hasSuffix(".qcow2") else { continue }
            for path in [pathA, pathB] {
                // Exit 0: no corruption and no leaked cluster (2 and 3 would say otherwise).
                let check = try HACluster.runTool(["/usr/bin/qemu-img", "check", path])
                #expect(check.status == 0, "qemu-img check \(path): \(check.output)")
            }
        }
    }
}
