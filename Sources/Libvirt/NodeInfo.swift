/// `virNodeGetInfo` + `virNodeGetFreeMemory`.
public struct NodeInfo: Sendable, Equatable {
    public var cpus: Int
    public var memoryBytes: UInt64
    public var freeMemoryBytes: UInt64
    public var cpuModel: String
}
