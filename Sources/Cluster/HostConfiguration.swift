/// One of the two hypervisor hosts.
public struct HostConfiguration: Sendable, Equatable {
    /// How the host runs guests: `kvm` on real hardware, `qemu` (TCG) where nested KVM is unusable.
    public enum DomainType: String, Sendable, CaseIterable {
        case kvm, qemu
    }

    /// Overrides for what libvirt reports, e.g. to keep memory back for the host itself.
    public struct Capacity: Sendable, Equatable {
        public var vcpus: Int?
        public var memoryMiB: Int?

        public init(vcpus: Int? = nil, memoryMiB: Int? = nil) {
            self.vcpus = vcpus
            self.memoryMiB = memoryMiB
        }
    }

    /// A health check of the host itself (`[[hosts.checks]]`, docs/config.md), run by that host's
    /// vmhad: when one has failed there and none fails on the peer, the host's VMs move to the
    /// peer (``Evacuation``).
    public struct Check: Sendable, Equatable {
        public enum Probe: Sendable, Equatable {
            /// The named interface must be up and running (carrier): the VMs' network.
            case interface(String)
            /// `/bin/sh -c COMMAND` with `VMHA_HOST` set; exit 0 is healthy.
            case script(String)
        }

        /// Unique within the host: `name` in the config, else `interface NAME` or `script`.
        public var name: String
        public var probe: Probe
        public var interval: Duration
        public var timeout: Duration
        public var thresholds: CheckThresholds

        public init(name: String, probe: Probe, interval: Duration = .seconds(2), timeout: Duration = .seconds(1), thresholds: CheckThresholds = CheckThresholds(startupGrace: .zero)) {
            self.name = name
            self.probe = probe
            self.interval = interval
            self.timeout = timeout
            self.thresholds = thresholds
        }
    }

    public var name: String
    public var replicationAddress: EndpointAddress
    /// One address per heartbeat network; the peer is lost only when all of them are silent.
    public var heartbeatAddresses: [EndpointAddress]
    public var libvirtURI: String
    /// How the *other* host's libvirtd reaches this host's for a live migration (e.g.
    /// `qemu+ssh://hostB/system`); nil: `libvirtURI`, which only works when it is not local-only.
    public var migrationURI: String?
    public var domainType: DomainType
    public var capacity: Capacity
    public var checks: [Check]

    public init(
        name: String, replicationAddress: EndpointAddress, heartbeatAddresses: [EndpointAddress],
        libvirtURI: String = "qemu:///system", migrationURI: String? = nil, domainType: DomainType = .kvm,
        capacity: Capacity = Capacity(), checks: [Check] = []
    ) {
        self.checks = checks
        self.migrationURI = migrationURI
        self.name = name
        self.replicationAddress = replicationAddress
        self.heartbeatAddresses = heartbeatAddresses
        self.libvirtURI = libvirtURI
        self.domainType = domainType
        self.capacity = capacity
    }
}
