/// vCPUs and memory: what a VM needs and what a host offers (from libvirt, or config overrides).
public struct Resources: Sendable, Hashable, CustomStringConvertible {
    public var vcpus: Int
    public var memoryMiB: Int

    public init(vcpus: Int, memoryMiB: Int) {
        self.vcpus = vcpus
        self.memoryMiB = memoryMiB
    }

    public static let zero = Resources(vcpus: 0, memoryMiB: 0)

    public static func + (lhs: Self, rhs: Self) -> Self { .init(vcpus: lhs.vcpus + rhs.vcpus, memoryMiB: lhs.memoryMiB + rhs.memoryMiB) }
    public static func - (lhs: Self, rhs: Self) -> Self { .init(vcpus: lhs.vcpus - rhs.vcpus, memoryMiB: lhs.memoryMiB - rhs.memoryMiB) }

    /// Whether `other` fits into these (free) resources.
    public func fits(_ other: Resources) -> Bool { other.vcpus <= vcpus && other.memoryMiB <= memoryMiB }

    public var description: String { "\(vcpus) vCPU, \(memoryMiB) MiB" }
}
