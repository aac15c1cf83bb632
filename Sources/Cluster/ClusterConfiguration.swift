import TOMLKit
import ReplicationPolicy

/// The whole configuration of a vmha cluster, parsed from TOML text (see `docs/config.md`).
///
/// Both hosts run with the same file; each finds itself by name. Parsing validates everything that
/// can be checked without I/O: the key file's content, the domain XML and the images are the
/// lead's to read.
public struct ClusterConfiguration: Sendable, Equatable {
    public struct Witness: Sendable, Equatable {
        public var address: EndpointAddress

        public init(address: EndpointAddress) { self.address = address }
    }

    public struct Limits: Sendable, Equatable {
        /// SafeKit's 25 (one mirror module per VM) is the default, not a law: raise it knowingly.
        public var maxVMs: Int = 25
        /// The boot-storm limit for failover: how many domains start at once.
        public var concurrentStarts: Int = 2

        public init() {}
    }

    public struct Timeouts: Sendable, Equatable {
        public var heartbeatInterval: Duration = .milliseconds(500)
        /// The peer is lost when no heartbeat arrived on any network for this long.
        public var detection: Duration = .seconds(3)
        /// How long one witness grant lasts; renewed every heartbeat interval by the holder.
        public var witnessLease: Duration = .seconds(4)
        /// Bound on how much any host's (or the witness's) monotonic clock rate may differ from real time.
        public var maxClockDriftPPM: Int = 1000
        /// Upper bound on the time from "decide to suspend I/O" to "no more guest write reaches the disk".
        public var suspendLatency: Duration = .milliseconds(200)
        /// How long the peer waits for a gracefully stopping vmhad to come back before it is lost
        /// (its guests are paused on their NBD disks meanwhile); zero: the usual detection.
        public var restartGrace: Duration = .seconds(30)

        public init() {}

        /// The timing constants the lease and liveness logic run on.
        public var leaseTiming: LeaseTiming {
            LeaseTiming(
                leaseDuration: witnessLease, maxDriftPPM: maxClockDriftPPM, suspendLatency: suspendLatency,
                renewInterval: heartbeatInterval)
        }
    }

    /// `[resync]`: how fast a resync may go while the guest runs (`ResyncRateController`).
    public struct Resync: Sendable, Equatable {
        /// Bytes per second, never exceeded (nil: the link's speed).
        public var maxRate: UInt64?
        /// Bytes per second kept however slow the guest's writes get.
        public var minRate: UInt64 = 16 << 20
        /// The guest's average write latency the resync yields to (nil: no steering).
        public var latencyTarget: Duration?

        public init() {}
    }

    public struct NBD: Sendable, Equatable {
        public var socketDirectory: String = "/run/vmha/nbd"
        /// Permission bits of each export's socket; QEMU (running as the libvirt user) must reach it.
        public var socketMode: Int = 0o660
        public var socketGroup: String?

        public init() {}
    }

    public var clusterName: String
    /// Path of the shared secret used for heartbeat HMACs and the replication link. Read by the lead.
    public var keyFile: String
    public var stateDirectory: String
    /// Exactly two.
    public var hosts: [HostConfiguration]
    public var witness: Witness?
    public var vms: [VMConfiguration]
    public var limits: Limits
    public var timeouts: Timeouts
    public var nbd: NBD
    /// How the replication links settle a split brain (`cluster.split_brain`).
    public var splitBrainPolicy: SplitBrainPolicy
    /// `metrics.listen`: where vmhad serves `/metrics` (Prometheus); nil: off.
    public var metricsListen: EndpointAddress?
    /// `[console]`: the web console (docs/console.md); nil: off.
    public var console: Console?
    public var resync = Resync()

    /// The web console: where it listens, the login token's file, TLS.
    public struct Console: Sendable, Equatable {
        public var listen: EndpointAddress
        /// A root-only file holding the login token (its first line).
        public var tokenFile: String
        public var tlsCertificate: String?
        public var tlsKey: String?
        public init(listen: EndpointAddress, tokenFile: String, tlsCertificate: String? = nil, tlsKey: String? = nil) {
            self.listen = listen
            self.tokenFile = tokenFile
            self.tlsCertificate = tlsCertificate
            self.tlsKey = tlsKey
        }
    }

    public init(
        clusterName: String, keyFile: String, stateDirectory: String = "/var/lib/vmha",
        hosts: [HostConfiguration], witness: Witness? = nil, vms: [VMConfiguration] = [],
        limits: Limits = Limits(), timeouts: Timeouts = Timeouts(), nbd: NBD = NBD(),
        splitBrainPolicy: SplitBrainPolicy = .disconnect, metricsListen: EndpointAddress? = nil, console: Console? = nil
    ) {
        self.console = console
        self.metricsListen = metricsListen
        self.clusterName = clusterName
        self.keyFile = keyFile
        self.stateDirectory = stateDirectory
        self.hosts = hosts
        self.witness = witness
        self.vms = vms
        self.limits = limits
        self.timeouts = timeouts
        self.nbd = nbd
        self.splitBrainPolicy = splitBrainPolicy
    }

    /// The host called `name`, if any.
    public func host(named name: String) -> HostConfiguration? { hosts.first { $0.name == name } }

    /// The other host of the pair.
    public func peer(of name: String) -> HostConfiguration? { hosts.first { $0.name != name } }

    /// Parses and validates TOML text; the error names the first offending key.
    public static func parse(_ text: String) throws(ConfigurationError) -> ClusterConfiguration {
        let root: ConfigNode
        do {
            root = ConfigNode(try TOMLTable(string: text))
        } catch let error as TOMLParseError {
            throw ConfigurationError(
                key: "<toml>",
                problem: "syntax error at line \(error.source.begin.line), column \(error.source.begin.column): \(error.description)")
        } catch {
            throw ConfigurationError(key: "<toml>", problem: "cannot parse: \(error)")
        }
        guard case .table(let entries) = root else {
            throw ConfigurationError(key: "<toml>", problem: "the document is not a table")
        }
        var parser = ConfigurationParser(root: ConfigTable(path: "", entries: entries))
        return try parser.parse()
    }
}
