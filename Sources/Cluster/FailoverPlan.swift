/// Which of a lost host's VMs the survivor starts, in what order, and what it cannot start.
///
/// Highest priority first (then name, for determinism); only VMs whose local replica is up to date
/// (starting an outdated or inconsistent copy would serve old or corrupt data); only what fits in
/// the survivor's free vCPU and memory (a VM that does not fit is skipped, smaller later ones may
/// still fit); in waves of at most `maxConcurrentStarts` to avoid a boot storm.
public struct FailoverPlan: Sendable, Equatable {
    public struct Candidate: Sendable, Hashable {
        public var name: String
        public var priority: Int
        public var resources: Resources
        /// The survivor's copy of the VM's disks.
        public var replica: ReplicaState

        public init(name: String, priority: Int, resources: Resources, replica: ReplicaState) {
            self.name = name
            self.priority = priority
            self.resources = resources
            self.replica = replica
        }
    }

    public enum Reason: Sendable, Hashable, CustomStringConvertible {
        case replicaNotUpToDate(ReplicaState)
        case insufficientCapacity(needed: Resources, free: Resources)

        public var description: String {
            switch self {
            case .replicaNotUpToDate(let state): "local replica is \(state.rawValue), not upToDate"
            case .insufficientCapacity(let needed, let free): "needs \(needed), only \(free) free"
            }
        }
    }

    public struct Skipped: Sendable, Hashable {
        public var name: String
        public var reason: Reason
    }

    /// Each wave starts together; the next wave starts when the previous one's domains are up.
    public var waves: [[String]]
    public var notStarted: [Skipped]
    /// Survivor's free resources once everything planned runs.
    public var remaining: Resources

    public static func make(
        lostHostVMs: [Candidate], survivorCapacity: Resources, alreadyRunning: [Resources],
        maxConcurrentStarts: Int
    ) -> FailoverPlan {
        let perWave = max(1, maxConcurrentStarts)
        var free = alreadyRunning.reduce(survivorCapacity) { $0 - $1 }
        var starts: [String] = []
        var skipped: [Skipped] = []
        let ordered = lostHostVMs.sorted { ($0.priority, $1.name) > ($1.priority, $0.name) }
        for vm in ordered {
            guard vm.replica == .upToDate else {
                skipped.append(Skipped(name: vm.name, reason: .replicaNotUpToDate(vm.replica)))
                continue
            }
            guard free.fits(vm.resources) else {
                skipped.append(Skipped(name: vm.name, reason: .insufficientCapacity(needed: vm.resources, free: free)))
                continue
            }
            free = free - vm.resources
            starts.append(vm.name)
        }
        let waves = stride(from: 0, to: starts.count, by: perWave).map { Array(starts[$0..<min($0 + perWave, starts.count)]) }
        return FailoverPlan(waves: waves, notStarted: skipped, remaining: free)
    }
}
