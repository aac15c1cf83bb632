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
        let (status, output) = try runTool([try builtProduct("vmhad"), "--config", "\(dir)/bad.toml", "--host", "hostA"])
        #expect(status == 78)
        let lines = output.split(separator: "\n")
        #expect(lines.count == 1, "one line: \(output)")
        #expect(output.contains("prefered_host"), "names the key: \(output)")
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/state"), "nothing started")
        // The same file without the typo but naming an unknown host: also one line, 78.
        try config.replacingOccurrences(of: "prefered_host", with: "preferred_host").write(toFile: "\(dir)/ok.toml", atomically: true, encoding: .utf8)
        let (status2, output2) = try runTool([try builtProduct("vmhad"), "--config", "\(dir)/ok.toml", "--host", "hostC"])
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
        let guest = try TestGuest.prepare(logger: logger)
        let vmhad = try builtProduct("vmhad"), vmha = try builtProduct("vmha")
        try await TestCluster.with(.init(hosts: 3), logger: logger) { cluster in
            let (a, b, c) = (cluster.hosts[0], cluster.hosts[1], cluster.hosts[2])
            let scratch = cluster.scratch
            // The witness on host C at one address both hosts route to over their own link to C.
            let witnessIP = "10.99.\(Int.random(in: 1...250)).9"
            try Shell.run(["ip", "-n", c.netns, "addr", "add", "\(witnessIP)/32", "dev", "lo"])
            try Shell.run(["ip", "-n", a.netns, "route", "add", "\(witnessIP)/32", "via", cluster.address(of: 2, toward: 0)])
            try Shell.run(["ip", "-n", b.netns, "route", "add", "\(witnessIP)/32", "via", cluster.address(of: 2, toward: 1)])
            let key = "\(scratch)/cluster.key"
            try Data((0..<32).map { _ in UInt8.random(in: 0...255) }).write(to: URL(fileURLWithPath: key))
            chmod(key, 0o600)

            // The VM: one raw disk, records workload; the XML names a file disk, vmhad rewrites it to NBD.
            let serial = SerialLog(path: "\(scratch)/vm1.serial.log")
            var domain = GuestDomain(name: "vm1", workload: .records, disks: [.file(path: "\(scratch)/vm1-original.img")], serialLog: serial.path)
            domain.interval = 0.1
            try domain.xml(guest: guest).write(toFile: "\(scratch)/vm1.xml", atomically: true, encoding: .utf8)

            var configPaths: [String] = []
            for (i, host) in [a, b].enumerated() {
                let dir = "\(scratch)/\(host.name)"
                try FileManager.default.createDirectory(atPath: "\(dir)/nbd", withIntermediateDirectories: true)
                try QemuNBD.createImage(at: "\(dir)/vm1.img", bytes: 64 << 20)
                let hostsTOML = [a, b].enumerated().map { j, h in
                    let address = cluster.address(of: j, toward: 1 - j)
                    return """
                        [[hosts]]
                        name = "\(h.name)"
                        replication_address = "\(address):7789"
                        heartbeat_addresses = ["\(address):7788"]
                        libvirt_uri = "\(h.uri)"
                        domain_type = "qemu"
                        """
                }.joined(separator: "\n")
                let toml = """
                    [cluster]
                    name = "ha-test"
                    key_file = "\(key)"
                    state_directory = "\(dir)/state"
                    \(hostsTOML)
                    [witness]
                    address = "\(witnessIP):7790"
                    [nbd]
                    socket_directory = "\(dir)/nbd"
                    socket_mode = "0666"
                    [[vms]]
                    name = "vm1"
                    domain_xml = "\(scratch)/vm1.xml"
                    preferred_host = "\(a.name)"
                    [[vms.disks]]
                    target = "vda"
                    image = "\(dir)/vm1.img"
                    metadata = "\(dir)/vm1.meta"
                    """
                let path = "\(dir)/vmha.toml"
                try toml.write(toFile: path, atomically: true, encoding: .utf8)
                configPaths.append(path)
                _ = i
            }
            let socketA = "\(scratch)/\(a.name)/state/control.sock", socketB = "\(scratch)/\(b.name)/state/control.sock"
            let witness = try NetnsProcess(
                netns: c.netns, arguments: [vmha, "witness", "--listen", "\(witnessIP):7790", "--key-file", key], log: "\(scratch)/witness.log")
            var daemonA = try NetnsProcess(netns: a.netns, arguments: [vmhad, "--config", configPaths[0], "--host", a.name], log: "\(scratch)/vmhad-A.log")
            let daemonB = try NetnsProcess(netns: b.netns, arguments: [vmhad, "--config", configPaths[1], "--host", b.name], log: "\(scratch)/vmhad-B.log")
            var daemons = [daemonA, daemonB]
            defer {
                for d in daemons { d.kill() }
                witness.kill()
            }
            func vm(_ socket: String) -> VMStatusReport? { (try? status(socket: socket))?.vms.first }
            do {
                // Start-up: A (preferred) runs it, B full-syncs and becomes UpToDate.
                try await waitUntil("vm1 PRIM on A, B UpToDate", timeout: .seconds(90)) {
                    vm(socketA)?.state == "PRIM" && vm(socketB)?.state == "SECOND" && vm(socketB)?.replica == "upToDate"
                }
                try await serial.waitForACK(after: 5, timeout: .seconds(60))
                logger.info("status A: \(String(describing: vm(socketA))) B: \(String(describing: vm(socketB)))")

                // (b) A dies hard: vmhad, libvirtd, QEMU killed, links down.
                daemonA.kill()
                try a.crash()
                let killedAt = ContinuousClock.now
                let acked = try #require(serial.lastACK())
                try await waitUntil("vm1 ALONE on B", timeout: .seconds(30)) { vm(socketB)?.state == "ALONE" }
                let takeover = killedAt.duration(to: .now)
                try await serial.waitFor("VERIFY after failover", timeout: .seconds(60)) { _ in serial.verifySummaries().count == 2 }
                let verified = killedAt.duration(to: .now)
                let summary = serial.verifySummaries()[1]
                print("FAILOVER: takeover (B runs vm1) \(takeover) after the kill; guest verified \(verified) after; VERIFY ok=\(summary.ok) bad=\(summary.bad) last=\(summary.last), last ACK before kill \(acked)")
                #expect(summary.bad == 0)
                #expect(summary.last >= acked, "every acknowledged record survived")
                try await serial.waitForLine(containing: "ACK \(summary.last + 3)", timeout: .seconds(30))

                // (d) A comes back: libvirtd, links, vmhad → SECOND, incremental resync, both UpToDate.
                try a.startLibvirtdInExistingNamespaces()
                try a.linksUp()
                let backAt = ContinuousClock.now
                daemonA = try NetnsProcess(netns: a.netns, arguments: [vmhad, "--config", configPaths[0], "--host", a.name], log: "\(scratch)/vmhad-A2.log")
                daemons.append(daemonA)
                try await waitUntil("A SECOND/upToDate, B PRIM", timeout: .seconds(60)) {
                    vm(socketA)?.state == "SECOND" && vm(socketA)?.replica == "upToDate" && vm(socketB)?.state == "PRIM"
                        && vm(socketB)?.peerReplica == "upToDate"
                }
                let resynced = try #require(vm(socketB)?.volumes.first)
                print("RESYNC: redundant again \(backAt.duration(to: .now)) after A's vmhad restart; resync \(resynced.resyncTotalBytes) bytes in \(resynced.resyncSeconds) s (of a \(64 << 20)-byte disk)")
                #expect(resynced.resyncTotalBytes < 64 << 20, "incremental, not full")
                let text = try runTool([vmha, "status", "--socket", socketB]).output
                print(text)

                // (e) Switchover back to A with `vmha migrate`.
                let migrateStart = ContinuousClock.now
                let migrate = try runTool([vmha, "migrate", "vm1", "--to", a.name, "--socket", socketB])
                print("MIGRATE: exit \(migrate.status) in \(migrateStart.duration(to: .now)): \(migrate.output)")
                #expect(migrate.status == 0)
                try await waitUntil("vm1 PRIM on A", timeout: .seconds(60)) { vm(socketA)?.state == "PRIM" && vm(socketB)?.state == "SECOND" }
                try await serial.waitFor("VERIFY after switchover", timeout: .seconds(60)) { _ in serial.verifySummaries().count == 3 }
                let third = serial.verifySummaries()[2]
                #expect(third.bad == 0)
                try await serial.waitForLine(containing: "ACK \(third.last + 3)", timeout: .seconds(30))
                try await waitUntil("B UpToDate after switchover", timeout: .seconds(30)) { vm(socketB)?.replica == "upToDate" }

                // (c) The witness is unreachable from B, then A dies: B must not start vm1.
                for interface in b.linkInterfaces where !a.linkInterfaces.contains(interface) {
                    // B's end of the B–C link (interface names carry both host indices).
                    _ = try? Shell.run(["ip", "-n", b.netns, "link", "set", "dev", interface, "down"])
                }
                try Shell.run(["ip", "-n", b.netns, "route", "flush", "\(witnessIP)/32"])
                daemonA.kill()
                try a.crash()
                try await Task.sleep(for: .seconds(12))
                let onB = vm(socketB)
                print("NO VOTE: 12 s after A died, B's module: \(onB?.state ?? "?")/\(onB?.replica ?? "?"), lease: \((try? status(socket: socketB))?.lease ?? "?")")
                #expect(onB?.state == "WAIT")
                let connB = try await LibvirtConnection.open(uri: b.uri, logger: logger)
                let active = try await connB.domains().asyncContains { (try? await $0.state().isActive) == true }
                await connB.close()
                #expect(!active, "no domain runs on B without the witness's vote")
            } catch {
                print("vmhad A log:\n\(daemonA.output().suffix(4000))\nvmhad B log:\n\(daemonB.output().suffix(4000))\nwitness:\n\(witness.output())")
                throw error
            }
            for d in daemons { await d.terminate() }
            witness.kill()
        }
    }
}

extension Array {
    func asyncContains(_ predicate: (Element) async -> Bool) async -> Bool {
        for element in self where await predicate(element) { return true }
        return false
    }
}
