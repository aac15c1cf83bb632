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

    public var name: String
    public var domainXMLPath: String
    public var disks: [Disk]
    /// Higher starts first after a failover.
    public var priority: Int
    public var preferredHost: String?
    public var failback: Failback

    public init(
        name: String, domainXMLPath: String, disks: [Disk], priority: Int = 0, preferredHost: String? = nil,
        failback: Failback = .manual
    ) {
        self.name = name
        self.domainXMLPath = domainXMLPath
        self.disks = disks
        self.priority = priority
        self.preferredHost = preferredHost
        self.failback = failback
    }
}
