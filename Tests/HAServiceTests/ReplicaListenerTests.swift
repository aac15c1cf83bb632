import Cluster
import Crypto
import Foundation
import Logging
import Replication
import Sockets
import Testing
import Uring
import Volume

@testable import HAService

/// One host's node (no libvirt: domain starts fail and are recorded) with 26 VMs; the test is
/// its peer, replicating the 26th VM's volume to it over loopback TCP.
@Suite("One replica listener for the daemon's life", .serialized)
struct ReplicaListenerTests {
    static let roleChangers = 25

    /// A failover wave promotes 25 volumes at once (as `failover` does, concurrently), then they
    /// are all demoted at once (as a lost vote does). The 26th VM stays secondary, its volume
    /// replicated from the peer the whole time: its link must never drop, and at the end the
    /// node serves all 26 volumes again. Before the fix every role change restarted the replica
    /// server (dropping every link), and two interleaved restarts left an orphan server holding
    /// the port with an old volume set.
    @Test(.timeLimit(.minutes(2))) func roleChangesLeaveAnotherVolumesLinkUp() async throws {
        let fixture = try NodeFixture(vms: Self.roleChangers + 1, preferredHost: { $0 < Self.roleChangers ? "hostA" : "hostB" })
        defer { fixture.remove() }
        let node = try fixture.makeNode()
        try await node.openModules()
        let steady = fixture.vmName(Self.roleChangers)
        let changers = (0..<Self.roleChangers).map(fixture.vmName)

        // The peer (host B) runs the 26th VM: its copy is primary and replicates to the node.
        let peerRing = try IOUring(logger: fixture.logger)
        var peerVolume = LocalVolume.Configuration(name: "\(steady)-disk0", imagePath: fixture.peerImage(Self.roleChangers), metadataPath: fixture.peerImage(Self.roleChangers) + ".vmha")
        peerVolume.initialRole = .primary
        let volume = try await LocalVolume.open(peerVolume, ring: peerRing, logger: fixture.logger)
        try await volume.promote()
        let replication = PrimaryReplication(
            volume: volume, peer: try #require(TCPSocket.Address("127.0.0.1:\(fixture.replicationPort)")),
            options: fixture.options(host: "hostB"), logger: fixture.logger)
        let replicating = Task(executorPreference: peerRing) { await replication.run() }
        defer { replicating.cancel() }
        try await until("the steady VM's link is attached and its full sync done") {
            replication.status.link == .connected && replication.status.resyncsCompleted == 1
        }

        // Watch the link while the roles change: any sample not connected is a drop.
        let watching = Task {
            var drops = 0
            while !Task.isCancelled {
                if replication.status.link != .connected { drops += 1 }
                try? await Task.sleep(for: .milliseconds(5))
            }
            return drops
        }
        for name in changers { await node.feed(named: name, .peerLost) }
        await withTaskGroup(of: Void.self) { group in
            for name in changers { group.addTask { await node.feed(named: name, .witnessVoteGranted) } }
        }
        let promoted = await node.handle(ControlRequest(command: "status")).status
        await withTaskGroup(of: Void.self) { group in
            for name in changers { group.addTask { await node.feed(named: name, .witnessVoteDenied) } }
        }
        let demoted = try #require(await node.handle(ControlRequest(command: "status")).status)
        watching.cancel()
        let drops = await watching.value

        // Every changer really changed roles twice: ALONE with primary volumes, then WAIT again.
        for name in changers {
            let first = try #require(promoted?.vms.first { $0.name == name })
            #expect(first.state == "ALONE" && first.volumes.allSatisfy { $0.role == "primary" }, "\(name) after promotion: \(first.state)")
            let second = try #require(demoted.vms.first { $0.name == name })
            #expect(second.state == "WAIT" && second.volumes.allSatisfy { $0.role == "secondary" }, "\(name) after demotion: \(second.state)")
        }
        #expect(drops == 0, "the steady VM's link was down in \(drops) samples while other VMs changed roles")
        #expect(replication.status.attachments == 1, "the steady VM's link was attached \(replication.status.attachments) times")
        let steadyReport = try #require(demoted.vms.first { $0.name == steady })
        #expect(steadyReport.volumes.map(\.link) == ["connected"], "the node's view of the steady link: \(steadyReport.volumes.map(\.link))")
        #expect(await node.replicaServer.volumeNames == Set(fixture.vmNames.map { "\($0)-disk0" }), "every secondary volume is served again")

        replicating.cancel()
        await replicating.value
        try await volume.close()
        await node.stop()
        await node.ring.shutdown()
        await peerRing.shutdown()
    }
}

/// Waits for `condition`, checking every 20 ms, for at most 30 s.
func until(_ what: String, _ condition: () async -> Bool) async throws {
    let deadline = ContinuousClock.now + .seconds(30)
    while !(await condition()) {
        guard ContinuousClock.now < deadline else {
            Issue.record("timed out waiting until \(what)")
            throw CancellationError()
        }
        try await Task.sleep(for: .milliseconds(20))
    }
}

/// A configuration for hosts A (the node under test) and B (the test) on loopback, with `vms`
/// VMs of one 4 MiB raw disk each, every file in a temporary directory.
struct NodeFixture {
    let directory: String
    let vmNames: [String]
    let replicationPort: Int
    let configPath: String
    let key: [UInt8]
    var logger = Logger(label: "test")

    init(vms: Int, preferredHost: (Int) -> String) throws {
        directory = NSTemporaryDirectory() + "vmha-node-\(UUID().uuidString.prefix(8))"
        let fm = FileManager.default
        try fm.createDirectory(atPath: directory + "/state", withIntermediateDirectories: true)
        key = (0..<32).map { _ in UInt8.random(in: 0...255) }
        try Data(key).write(to: URL(fileURLWithPath: directory + "/cluster.key"))
        vmNames = (0..<vms).map { String(format: "vm%02d", $0 + 1) }
        let ports = try freeTCPPorts(4)
        replicationPort = ports[0]
        var vmsTOML = ""
        for (index, name) in vmNames.enumerated() {
            let image = "\(directory)/\(name).img"
            for path in [image, "\(directory)/\(name)-peer.img"] {
                // Sparse, like a fresh image: a 100-VM fixture writes no data.
                guard fm.createFile(atPath: path, contents: nil), truncate(path, 4 << 20) == 0 else { throw POSIXError(.EIO) }
            }
            try """
                <domain type="kvm"><name>\(name)</name><memory unit="MiB">64</memory><vcpu>1</vcpu>
                <os><type arch="x86_64">hvm</type></os><devices>
                <disk type="file" device="disk"><source file="\(image)"/><target dev="vda" bus="virtio"/></disk>
                </devices></domain>
                """.write(toFile: "\(directory)/\(name).xml", atomically: true, encoding: .utf8)
            vmsTOML += """

                [[vms]]
                name = "\(name)"
                domain_xml = "\(directory)/\(name).xml"
                preferred_host = "\(preferredHost(index))"
                [[vms.disks]]
                target = "vda"
                image = "\(image)"
                metadata = "\(image).vmha"
                [[vms.checks]]
                kind = "script"
                name = "ok"
                command = "true"

                """
        }
        let toml = """
            [cluster]
            name = "test"
            key_file = "\(directory)/cluster.key"
            state_directory = "\(directory)/state"

            [[hosts]]
            name = "hostA"
            replication_address = "127.0.0.1:\(ports[0])"
            heartbeat_addresses = ["127.0.0.1:\(ports[2])"]
            domain_type = "qemu"
            [[hosts.checks]]
            kind = "script"
            name = "ok"
            command = "true"
            [hosts.capacity]
            vcpus = 64
            memory_mib = 65536

            [[hosts]]
            name = "hostB"
            replication_address = "127.0.0.1:\(ports[1])"
            heartbeat_addresses = ["127.0.0.1:\(ports[3])"]

            [limits]
            max_vms = \(vms)
            concurrent_starts = \(vms)

            [nbd]
            socket_directory = "\(directory)/nbd"
            \(vmsTOML)
            """
        configPath = directory + "/vmha.toml"
        try toml.write(toFile: configPath, atomically: true, encoding: .utf8)
        try fm.createDirectory(atPath: directory + "/nbd", withIntermediateDirectories: true)
    }

    func vmName(_ index: Int) -> String { vmNames[index] }
    func peerImage(_ index: Int) -> String { "\(directory)/\(vmNames[index])-peer.img" }

    func makeNode() throws -> ClusterNode {
        let configuration = try ClusterConfiguration.parse(try String(contentsOfFile: configPath, encoding: .utf8))
        return try ClusterNode(
            config: configuration, configPath: configPath, hostName: "hostA", key: key, ring: try IOUring(logger: logger), socketGroup: nil,
            logger: logger)
    }

    func options(host: String) -> ReplicationOptions {
        ReplicationOptions(handshake: .init(hostName: host, clusterName: "test", clusterKey: SymmetricKey(data: key)))
    }

    func remove() { try? FileManager.default.removeItem(atPath: directory) }
}

/// Ports free on loopback now (bound to port 0, then released).
func freeTCPPorts(_ count: Int) throws -> [Int] {
    var sockets: [Int32] = []
    defer { for fd in sockets { close(fd) } }
    return try (0..<count).map { _ in
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        sockets.append(fd)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { throw POSIXError(.EADDRINUSE) }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
