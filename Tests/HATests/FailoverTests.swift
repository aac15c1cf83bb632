import Cluster
import Foundation
import Harness
import Libvirt
import Logging
import Testing

#if canImport(Glibc)
import Glibc
#endif

let hostsAvailable = getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/libvirtd")
    && FileManager.default.isExecutableFile(atPath: "/usr/bin/qemu-system-x86_64")

@Suite("HA service on simulated hosts", .serialized)
struct FailoverTests {
    let logger = Logger(label: "vmha.tests.ha")

    /// (a) A bad configuration: one line naming the key and the problem, exit 78, nothing started.
    @Test func badConfigurationIsOneLineAndExit78() throws {
        let dir = "/tmp/vmha-badconfig-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = """
            [cluster]
            name = "t"
            key_file = "\(dir)/key"
            state_directory = "\(dir)/state"
            [[hosts]]
            name = "hostA"
            replication_address = "127.0.0.1:17789"
            heartbeat_addresses = ["127.0.0.1:17788"]
            [[hosts]]
            name = "hostB"
            replication_address = "127.0.0.2:17789"
            heartbeat_addresses = ["127.0.0.2:17788"]
            [[vms]]
            name = "vm1"
            domain_xml = "\(dir)/vm1.xml"
            prefered_host = "hostA"
            [[vms.disks]]
            target = "vda"
            image = "\(dir)/vm1.img"
            metadata = "\(dir)/vm1.meta"
            """
        try config.write(toFile: "\(dir)/bad.toml", atomically: true, encoding: .utf8)
        let (status, output) = try HACluster.runTool([try builtProduct("vmhad"), "--config", "\(dir)/bad.toml", "--host", "hostA"])
        #expect(status == 78)
        let lines = output.split(separator: "\n")
        #expect(lines.count == 1, "one line: \(output)")
        #expect(output.contains("prefered_host"), "names the key: \(output)")
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/state"), "nothing started")
        // The same file without the typo but naming an unknown host: also one line, 78.
        try config.replacingOccurrences(of: "prefered_host", with: "preferred_host").write(toFile: "\(dir)/ok.toml", atomically: true, encoding: .utf8)
        let (status2, output2) = try HACluster.runTool([try builtProduct("vmhad"), "--config", "\(dir)/ok.toml", "--host", "hostC"])
        #expect(status2 == 78)
        #expect(output2.split(separator: "\n").count == 1 && output2.contains("hostC"), "\(output2)")
    }

    /// (b)–(e) and (c): one cluster, a records guest on host A.
    /// b: A dies hard → the VM runs on B, every acknowledged record is there.
    /// d: A comes back → incremental resync → both UpToDate.
    /// e: `vmha migrate` back to A.
    /// c: witness unreachable from B, A dies again → B does not start the VM.
    @Test(.enabled(if: hostsAvailable), .timeLimit(.minutes(10)))
    func failoverResyncSwitchoverAndNoVoteNoStart() async throws {
        try await HACluster.test(logger: logger) { ha, watch in
            let (a, b) = (ha.hostA, ha.hostB)
            let serial = ha.serial
            // Start-up: A (preferred) runs it, B full-syncs and becomes UpToDate.
            try await ha.startAndWaitUntilRedundant()

            // (b) A dies hard: vmhad, libvirtd, QEMU killed, links down.
            let killedAt = try await ha.crashHostA(watch: watch)
            let acked = try #require(serial.lastACK())
            try await HACluster.waitUntil("vm1 ALONE on B", timeout: .seconds(30)) { ha.vm(1)?.state == "ALONE" }
            let takeover = killedAt.duration(to: .now)
            try await serial.waitFor("VERIFY after failover", timeout: .seconds(60)) { _ in serial.verifySummaries().count == 2 }
            let verified = killedAt.duration(to: .now)
            let summary = serial.verifySummaries()[1]
            print("FAILOVER: takeover (B runs vm1) \(takeover) after the kill; guest verified \(verified) after; VERIFY ok=\(summary.ok) bad=\(summary.bad) last=\(summary.last), last ACK before kill \(acked)")
            #expect(summary.bad == 0)
            #expect(summary.last >= acked, "every acknowledged record survived")
            try await serial.waitForLine(containing: "ACK \(summary.last + 3)", timeout: .seconds(30))

            // (d) A comes back: libvirtd, links, vmhad → SECOND, incremental resync, both UpToDate.
            let redundantAgain = try await ha.returnHostAAsSecondary()
            let resynced = try #require(ha.vm(1)?.volumes.first)
            print("RESYNC: redundant again \(redundantAgain) after A's vmhad restart; resync \(resynced.resyncTotalBytes) bytes in \(resynced.resyncSeconds) s (of a \(64 << 20)-byte disk)")
            #expect(resynced.resyncTotalBytes < 64 << 20, "incremental, not full")
            print(try ha.vmhaCommand(1, ["status"]).output)
            // The resync's own events say what it did (the figure `vmha demo` reports).
            let events = try ha.vmhaCommand(1, ["events", "--since", "0", "--no-follow", "--json"])
            #expect(events.status == 0, "\(events.output)")
            let kinds = events.output.split(separator: "\n").compactMap { try? JSONDecoder().decode(NodeEvent.self, from: Data($0.utf8)).kind }
            let finished = kinds.compactMap { if case .resyncFinished(let volume, let bytes, _, _) = $0, volume == "vm1-disk0" { bytes } else { nil } }
            #expect(finished.last == resynced.resyncTotalBytes && (finished.last ?? 0) > 0, "resync events: \(finished)")
            #expect(kinds.contains { if case .resyncStarted(volume: "vm1-disk0", _, _) = $0 { true } else { false } })
            #expect(kinds.contains(.failoverWave(number: 1, vms: ["vm1"])), "B's failover is an event")
            #expect(kinds.contains(.link(volume: "vm1-disk0", state: "connected")))

            // (e) Switchover back to A with `vmha migrate`.
            let migrateStart = ContinuousClock.now
            let migrate = try ha.vmhaCommand(1, ["migrate", "vm1", "--to", a.name])
            print("MIGRATE: exit \(migrate.status) in \(migrateStart.duration(to: .now)): \(migrate.output)")
            #expect(migrate.status == 0)
            try await HACluster.waitUntil("vm1 PRIM on A", timeout: .seconds(60)) { ha.vm(0)?.state == "PRIM" && ha.vm(1)?.state == "SECOND" }
            try await serial.waitFor("VERIFY after switchover", timeout: .seconds(60)) { _ in serial.verifySummaries().count == 3 }
            let third = serial.verifySummaries()[2]
            #expect(third.bad == 0)
            try await serial.waitForLine(containing: "ACK \(third.last + 3)", timeout: .seconds(30))
            try await HACluster.waitUntil("B UpToDate after switchover", timeout: .seconds(30)) { ha.vm(1)?.replica == "upToDate" }

            // (c) The witness is unreachable from B, then A dies: B must not start vm1.
            for interface in b.linkInterfaces where !a.linkInterfaces.contains(interface) {
                // B's end of the B–C link (interface names carry both host indices).
                _ = try? Shell.run(["ip", "-n", b.netns, "link", "set", "dev", interface, "down"])
            }
            try Shell.run(["ip", "-n", b.netns, "route", "flush", "\(ha.witnessIP)/32"])
            _ = try await ha.crashHostA(watch: watch)
            try await Task.sleep(for: .seconds(12))
            let onB = ha.vm(1)
            print("NO VOTE: 12 s after A died, B's module: \(onB?.state ?? "?")/\(onB?.replica ?? "?"), lease: \(ha.status(1)?.lease ?? "?")")
            #expect(onB?.state == "WAIT")
            let connB = try await LibvirtConnection.open(uri: b.uri, logger: logger)
            let active = try await connB.domains().asyncContains { (try? await $0.state().isActive) == true }
            await connB.close()
            #expect(!active, "no domain runs on B without the witness's vote")
        }
    }
}

extension Array {
    func asyncContains(_ predicate: (Element) async -> Bool) async -> Bool {
        for element in self where await predicate(element) { return true }
        return false
    }
}
