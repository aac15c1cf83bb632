/// A protected VM: a libvirt domain plus the disks vmha replicates for it.
public struct VMConfiguration: Sendable, Equatable {
    /// Whether a VM returns to its preferred host by itself once that host is redundant again.
    public enum Failback: String, Sendable, CaseIterable {
        case automatic, manual
    }

    /// One replicated disk. It is identified in the domain XML either by its target device
    /// (`vda`) or by its current source path; exactly one of the two is given.
    public struct Disk: Sendable, Equatable {
        public enum Selector: Sendable, Equatable {
            case target(String)
            case source(String)
        }

        public var selector: Selector
        /// The image file (raw or qcow2) on each host.
        public var imagePath: String
        /// The replication metadata (generation identifiers, bitmap, activity log) for this image.
        public var metadataPath: String

        public init(selector: Selector, imagePath: String, metadataPath: String) {
            self.selector = selector
            self.imagePath = imagePath
            self.metadataPath = metadataPath
        }
    }

    /// A health check of what the VM's users see (`[[vms.checks]]`, docs/config.md), run by the
    /// host that runs the VM; judged by ``CheckMachine``, acted on by ``RecoveryPolicy``.
    public struct Check: Sendable, Equatable {
        public enum Probe: Sendable, Equatable {
            /// `/bin/sh -c COMMAND` with `VMHA_VM` and `VMHA_HOST` set; exit 0 is healthy.
            case script(String)
            /// A TCP connect to the guest's service from the host that runs the VM.
            case tcp(EndpointAddress)
            /// One ICMP echo to the guest's address (iputils `ping`) from the host that runs the VM.
            case ping(String)
            /// The guest's qemu-guest-agent answers `guest-ping` (through libvirt, on the host that
            /// runs the VM): the guest's kernel and its agent are alive, with no network needed.
            case agent
        }

        /// Unique within the VM: `name` in the config, else the probe (`tcp 10.0.0.5:80`, `script`, `agent`).
        public var name: String
        public var probe: Probe
        public var interval: Duration
        public var timeout: Duration
        public var thresholds: CheckThresholds

        public init(name: String, probe: Probe, interval: Duration = .seconds(5), timeout: Duration = .seconds(2), thresholds: CheckThresholds = CheckThresholds()) {
            self.name = name
            self.probe = probe
            self.interval = interval
            self.timeout = timeout
            self.thresholds = thresholds
        }
    }

    public var name: String
    public var domainXMLPath: String
    public var disks: [Disk]
    /// Higher starts first after a failover.
    public var priority: Int
    public var preferredHost: String?
    public var failback: Failback
    public var checks: [Check]
    /// `[vms.recovery]`: what a failed check leads to.
    public var recovery: RecoveryLimits

    public init(
        name: String, domainXMLPath: String, disks: [Disk], priority: Int = 0, preferredHost: String? = nil,
        failback: Failback = .manual, checks: [Check] = [], recovery: RecoveryLimits = RecoveryLimits()
    ) {
        self.checks = checks
        self.recovery = recovery
        self.name = name
        self.domainXMLPath = domainXMLPath
        self.disks = disks
        self.priority = priority
        self.preferredHost = preferredHost
        self.failback = failback
    }
}
