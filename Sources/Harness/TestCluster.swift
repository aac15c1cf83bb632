import Foundation
import Logging
import Synchronization

/// N simulated hypervisors on this machine, joined pairwise by veth links.
///
/// Use ``with(_:logger:_:)``: the cluster is torn down on every path out of the body,
/// including thrown errors. Names (netns, veths, directories) carry a per-run ID, so parallel
/// or leftover runs do not collide.
public final class TestCluster: Sendable {
    /// Optional `tc tbf` shaping on every link (both directions).
    public enum LinkShaping: Sendable {
        /// `tbf rate 1gbit burst 256kb latency 10ms`
        case gigabit
        /// `tbf rate 10gbit burst 4mb latency 10ms`
        case tenGigabit

        var tbf: [String] {
            switch self {
            case .gigabit: ["rate", "1gbit", "burst", "256kb", "latency", "10ms"]
            case .tenGigabit: ["rate", "10gbit", "burst", "4mb", "latency", "10ms"]
            }
        }
    }

    public struct Configuration: Sendable {
        public var hosts: Int
        /// Per-run directories are created below it; must not be under /run/libvirt etc.
        public var baseDirectory: String = "/tmp/vmha-cluster"
        /// Link between host i and j (i < j) gets `<prefix>.<pair>.<i+1>/24` and `.<j+1>`.
        public var addressPrefix: String = "10.77"
        public var shaping: LinkShaping?

        public init(hosts: Int = 2, shaping: LinkShaping? = nil) {
            self.hosts = hosts
            self.shaping = shaping
        }
    }

    public struct Link: Sendable {
        public var hosts: (Int, Int)
        public var interfaces: (String, String)
        public var addresses: (String, String)
    }

    public let runID: String
    public let directory: String
    public let hosts: [SimulatedHost]
    public let links: [Link]
    let logger: Logger
    private let nbdServers = Mutex<[QemuNBD]>([])

    private init(runID: String, directory: String, hosts: [SimulatedHost], links: [Link], logger: Logger) {
        self.runID = runID
        self.directory = directory
        self.hosts = hosts
        self.links = links
        self.logger = logger
    }

    /// Brings up a cluster, runs `body`, tears the cluster down whatever happens.
    public static func with<T: Sendable>(
        _ configuration: Configuration = Configuration(),
        logger: Logger,
        _ body: (TestCluster) async throws -> T
    ) async throws -> T {
        let cluster = try await start(configuration, logger: logger)
        // Teardown in a task of its own: a cancelled body (Ctrl-C in `vmha demo`) must not cut
        // the waits of the teardown short and leave domains, daemons or namespaces behind.
        do {
            let result = try await body(cluster)
            await Task { await cluster.shutdown() }.value
            return result
        } catch {
            await Task { await cluster.shutdown() }.value
            throw error
        }
    }

    /// The address of `host` on its link to `peer`.
    public func address(of host: Int, toward peer: Int) -> String {
        for link in links {
            if link.hosts == (host, peer) { return link.addresses.0 }
            if link.hosts == (peer, host) { return link.addresses.1 }
        }
        preconditionFailure("no link between host \(host) and \(peer)")
    }

    /// A scratch directory for images, sockets and logs, visible to all hosts and to QEMU.
    public var scratch: String { "\(directory)/scratch" }

    static func start(_ configuration: Configuration, logger: Logger) async throws -> TestCluster {
        precondition(configuration.hosts >= 1 && configuration.hosts <= 9)
        let runID = String(UInt32.random(in: 0...UInt32.max), radix: 16).padding(toLength: 8, withPad: "0", startingAt: 0)
        let short = String(runID.prefix(6))
        let directory = "\(configuration.baseDirectory)/\(runID)"
        let fm = FileManager.default
        try fm.createDirectory(atPath: "\(directory)/scratch", withIntermediateDirectories: true)
        // QEMU (libvirt-qemu) must be able to traverse to sockets, logs and images.
        for d in [configuration.baseDirectory, directory, "\(directory)/scratch"] {
            try fm.setAttributes([.posixPermissions: 0o755], ofItemAtPath: d)
        }
        try "\(getpid())\n".write(toFile: "\(directory)/owner.pid", atomically: true, encoding: .utf8)
        var hosts: [SimulatedHost] = []
        for i in 0..<configuration.hosts {
            let letter = String(UnicodeScalar(UInt8(65 + i)))
            let uuidTail = String(repeating: String(i + 1), count: 12)
            hosts.append(SimulatedHost(
                name: "host\(letter)", netns: "vmha-\(runID)-\(letter)", root: "\(directory)/host\(letter)",
                hostUUID: "\(String(repeating: String(i + 1), count: 8))-\(String(repeating: String(i + 1), count: 4))-4\(String(repeating: String(i + 1), count: 3))-8\(String(repeating: String(i + 1), count: 3))-\(uuidTail)",
                logger: logger))
        }
        var links: [Link] = []
        var partial = TestCluster(runID: runID, directory: directory, hosts: hosts, links: [], logger: logger)
        do {
            for host in hosts { try host.start() }
            var pair = 0
            for i in 0..<hosts.count {
                for j in (i + 1)..<max(i + 1, hosts.count) {
                    pair += 1
                    let a = "v\(short)\(i)\(j)", b = "v\(short)\(j)\(i)"
                    let addrA = "\(configuration.addressPrefix).\(pair).\(i + 1)"
                    let addrB = "\(configuration.addressPrefix).\(pair).\(j + 1)"
                    try Shell.run(["ip", "link", "add", a, "type", "veth", "peer", "name", b])
                    try Shell.run(["ip", "link", "set", a, "netns", hosts[i].netns])
                    try Shell.run(["ip", "link", "set", b, "netns", hosts[j].netns])
                    for (host, ifname, addr) in [(hosts[i], a, addrA), (hosts[j], b, addrB)] {
                        try Shell.run(["ip", "-n", host.netns, "addr", "add", "\(addr)/24", "dev", ifname])
                        try Shell.run(["ip", "-n", host.netns, "link", "set", ifname, "up"])
                        if let shaping = configuration.shaping {
                            try Shell.run(["ip", "netns", "exec", host.netns, "tc", "qdisc", "add", "dev", ifname, "root", "tbf"] + shaping.tbf)
                        }
                        host.addInterface(ifname)
                    }
                    links.append(Link(hosts: (i, j), interfaces: (a, b), addresses: (addrA, addrB)))
                }
            }
            partial = TestCluster(runID: runID, directory: directory, hosts: hosts, links: links, logger: logger)
            return partial
        } catch {
            await partial.shutdown()
            throw error
        }
    }

    /// Starts a qemu-nbd for `image` on `socket` that the cluster stops at shutdown (after the
    /// guests using it are gone).
    @discardableResult
    public func startNBD(image: String, socket: String, format: String = "raw") throws -> QemuNBD {
        let server = QemuNBD(image: image, socket: socket, format: format)
        nbdServers.withLock { $0.append(server) }
        try server.start()
        return server
    }

    /// Tears down every host (domains, daemons, QEMUs, netns), stops the NBD servers and
    /// deletes the run directory.
    public func shutdown() async {
        for host in hosts { await host.teardown() }
        for server in nbdServers.withLock({ $0 }) { server.stop() }
        try? FileManager.default.removeItem(atPath: directory)
        logger.debug("cluster down", metadata: ["run": "\(runID)"])
    }
}
