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

    public init(
        name: String, replicationAddress: EndpointAddress, heartbeatAddresses: [EndpointAddress],
        libvirtURI: String = "qemu:///system", migrationURI: String? = nil, domainType: DomainType = .kvm,
        capacity: Capacity = Capacity()
    ) {
        self.migrationURI = migrationURI
        self.name = name
        self.replicationAddress = replicationAddress
        self.heartbeatAddresses = heartbeatAddresses
        self.libvirtURI = libvirtURI
        self.domainType = domainType
        self.capacity = capacity
    }
}
