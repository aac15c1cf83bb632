/// Where each VM should run, balancing memory and vCPU load over the two hosts with as few moves as
/// possible (like Ganeti's hbal: greedy steps, each the single best move, until nothing improves).
///
/// Score (lower is better) = std-dev of memory load + std-dev of vCPU load (loads as fractions of
/// capacity) + `preferenceWeight` per VM not on its preferred host. Capacity is a hard limit.
/// Everything iterates in name order and ties keep the earlier candidate, so the plan is deterministic.
public enum Placement {
    public struct VM: Sendable, Hashable {
        public var name: String
        public var resources: Resources
        public var preferredHost: String?

        public init(name: String, resources: Resources, preferredHost: String? = nil) {
            self.name = name
            self.resources = resources
            self.preferredHost = preferredHost
        }
    }

    public struct Host: Sendable, Hashable {
        public var name: String
        public var capacity: Resources

        public init(name: String, capacity: Resources) {
            self.name = name
            self.capacity = capacity
        }
    }

    public struct Limits: Sendable, Hashable {
        public var maxVMs: Int
        /// Cost of one VM away from its preferred host, in the same units as load std-dev.
        public var preferenceWeight: Double
        /// hbal's `--max-length`: at most this many moves in one plan.
        public var maxMoves: Int
        /// A move must improve the score by more than this to be worth the disruption.
        public var minimumGain: Double

        public init(maxVMs: Int = 25, preferenceWeight: Double = 0.05, maxMoves: Int = 25, minimumGain: Double = 0.001) {
            self.maxVMs = maxVMs
            self.preferenceWeight = preferenceWeight
            self.maxMoves = maxMoves
            self.minimumGain = minimumGain
        }
    }

    /// Plans from the current assignment (`current[vm] = host`; VMs absent from it are new and get
    /// placed first, largest first). Throws when the input itself is impossible.
    ///
    /// - Parameters:
    ///   - movable: only these VMs may be moved by rebalancing (`vmha place VM…`); nil: all.
    ///   - pinned: these VMs must end on the given host (`vmha place VM… --on HOST`); they are
    ///     placed first and never rebalanced. A pin that would overload its host throws.
    public static func plan(
        vms: [VM], hosts: [Host], current: [String: String], limits: Limits = Limits(),
        movable: Set<String>? = nil, pinned: [String: String] = [:]
    ) throws(PlacementError) -> PlacementPlan {
        guard hosts.count == 2 else { throw .wrongHostCount(hosts.count) }
        guard vms.count <= limits.maxVMs else { throw .tooManyVMs(count: vms.count, limit: limits.maxVMs) }
        let hostNames = hosts.map(\.name)
        let sortedVMs = vms.sorted { $0.name < $1.name }
        var seen = Set<String>()
        for vm in sortedVMs {
            guard seen.insert(vm.name).inserted else { throw .duplicateVM(vm.name) }
            if let host = current[vm.name], !hostNames.contains(host) { throw .unknownHost(vm: vm.name, host: host) }
        }
        for name in Set(pinned.keys).union(movable ?? []).sorted() where !seen.contains(name) { throw .unknownVM(name) }
        var assignment = current.filter { seen.contains($0.key) }
        let before = score(sortedVMs, hosts, assignment, limits)
        var moves: [PlacementPlan.Move] = []
        var unplaced: [String] = []

        for (vm, host) in pinned.sorted(by: { $0.key < $1.key }) where assignment[vm] != host {
            guard hostNames.contains(host) else { throw .unknownHost(vm: vm, host: host) }
            var trial = assignment
            trial[vm] = host
            guard !overloadsMore(sortedVMs, hosts, before: assignment, after: trial) else { throw .doesNotFit(vm: vm, host: host) }
            moves.append(.init(vm: vm, from: assignment[vm], to: host))
            assignment = trial
        }
        let mayMove = { (vm: String) in pinned[vm] == nil && (movable?.contains(vm) ?? true) }

        // New VMs: biggest first (bin-packing habit), each where the score is best.
        let new = sortedVMs.filter { assignment[$0.name] == nil && mayMove($0.name) }
            .sorted { ($0.resources.memoryMiB, $0.resources.vcpus, $1.name) > ($1.resources.memoryMiB, $1.resources.vcpus, $0.name) }
        for vm in new {
            var best: (host: String, score: Double)?
            for host in hostNames {
                var trial = assignment
                trial[vm.name] = host
                guard !overloadsMore(sortedVMs, hosts, before: assignment, after: trial) else { continue }
                let trialScore = score(sortedVMs, hosts, trial, limits)
                if best == nil || trialScore < best!.score { best = (host, trialScore) }
            }
            if let best {
                assignment[vm.name] = best.host
                moves.append(.init(vm: vm.name, from: nil, to: best.host))
            } else {
                unplaced.append(vm.name)
            }
        }

        // Rebalance: one best step at a time; a step is a single move or, when no single move helps
        // (two equal VMs each on the other's preferred host), a swap of two VMs.
        var currentScore = score(sortedVMs, hosts, assignment, limits)
        func record(_ vm: String, from: String?, to: String) {
            // A VM moved twice collapses into one move from its original host.
            if let index = moves.firstIndex(where: { $0.vm == vm }) {
                let original = moves.remove(at: index).from
                if original != to { moves.append(.init(vm: vm, from: original, to: to)) }
            } else {
                moves.append(.init(vm: vm, from: from, to: to))
            }
        }
        let other = { (host: String) in hostNames.first { $0 != host }! }
        while moves.filter({ $0.from != nil }).count < limits.maxMoves {
            var best: (vms: [String], score: Double)?
            for vm in sortedVMs where mayMove(vm.name) {
                guard let from = assignment[vm.name] else { continue }
                var trial = assignment
                trial[vm.name] = other(from)
                guard !overloadsMore(sortedVMs, hosts, before: assignment, after: trial) else { continue }
                let trialScore = score(sortedVMs, hosts, trial, limits)
                if trialScore < currentScore - limits.minimumGain, best == nil || trialScore < best!.score {
                    best = ([vm.name], trialScore)
                }
            }
            if best == nil, moves.filter({ $0.from != nil }).count + 2 <= limits.maxMoves {
                for first in sortedVMs where assignment[first.name] == hostNames[0] && mayMove(first.name) {
                    for second in sortedVMs where assignment[second.name] == hostNames[1] && mayMove(second.name) {
                        var trial = assignment
                        trial[first.name] = hostNames[1]
                        trial[second.name] = hostNames[0]
                        guard !overloadsMore(sortedVMs, hosts, before: assignment, after: trial) else { continue }
                        let trialScore = score(sortedVMs, hosts, trial, limits)
                        if trialScore < currentScore - limits.minimumGain, best == nil || trialScore < best!.score {
                            best = ([first.name, second.name], trialScore)
                        }
                    }
                }
            }
            guard let best else { break }
            for vm in best.vms {
                let from = assignment[vm]!
                assignment[vm] = other(from)
                record(vm, from: from, to: other(from))
            }
            currentScore = best.score
        }
        return PlacementPlan(
            assignment: assignment, moves: moves, unplaced: unplaced, scoreBefore: before, scoreAfter: currentScore)
    }

    /// The balance score of an assignment (over-capacity adds `overloadPenalty` per unit of overload).
    public static func score(_ vms: [VM], _ hosts: [Host], _ assignment: [String: String], _ limits: Limits) -> Double {
        var used = Dictionary(uniqueKeysWithValues: hosts.map { ($0.name, Resources.zero) })
        var offPreferred = 0
        for vm in vms {
            guard let host = assignment[vm.name] else { continue }
            used[host, default: .zero] = used[host, default: .zero] + vm.resources
            if let preferred = vm.preferredHost, preferred != host { offPreferred += 1 }
        }
        var memoryLoads: [Double] = []
        var cpuLoads: [Double] = []
        var overload = 0.0
        for host in hosts {
            let load = used[host.name] ?? .zero
            overload += overloadFraction(load, host.capacity)
            memoryLoads.append(Double(load.memoryMiB) / Double(max(host.capacity.memoryMiB, 1)))
            cpuLoads.append(Double(load.vcpus) / Double(max(host.capacity.vcpus, 1)))
        }
        return standardDeviation(memoryLoads) + standardDeviation(cpuLoads) + limits.preferenceWeight * Double(offPreferred)
            + overloadPenalty * overload
    }

    /// Over-capacity dominates everything else, so moves that relieve an overloaded host come first
    /// (the current assignment may be overloaded, e.g. after a failover onto one host).
    static let overloadPenalty = 1000.0

    private static func overloadFraction(_ load: Resources, _ capacity: Resources) -> Double {
        let cpu = Double(max(0, load.vcpus - capacity.vcpus)) / Double(max(capacity.vcpus, 1))
        let memory = Double(max(0, load.memoryMiB - capacity.memoryMiB)) / Double(max(capacity.memoryMiB, 1))
        return cpu + memory
    }

    /// Whether every host's load fits its capacity.
    public static func fitsCapacity(_ vms: [VM], _ hosts: [Host], _ assignment: [String: String]) -> Bool {
        let loads = hostLoads(vms, hosts, assignment)
        return hosts.allSatisfy { $0.capacity.fits(loads[$0.name] ?? .zero) }
    }

    private static func hostLoads(_ vms: [VM], _ hosts: [Host], _ assignment: [String: String]) -> [String: Resources] {
        var used = Dictionary(uniqueKeysWithValues: hosts.map { ($0.name, Resources.zero) })
        for vm in vms {
            if let host = assignment[vm.name] { used[host, default: .zero] = used[host, default: .zero] + vm.resources }
        }
        return used
    }

    /// A step may not push a host over capacity (or further over): capacity is hard.
    private static func overloadsMore(_ vms: [VM], _ hosts: [Host], before: [String: String], after: [String: String]) -> Bool {
        let old = hostLoads(vms, hosts, before), new = hostLoads(vms, hosts, after)
        return hosts.contains { host in
            let capacity = host.capacity
            let was = old[host.name] ?? .zero, now = new[host.name] ?? .zero
            return (now.vcpus > capacity.vcpus && now.vcpus > was.vcpus) || (now.memoryMiB > capacity.memoryMiB && now.memoryMiB > was.memoryMiB)
        }
    }

    private static func standardDeviation(_ values: [Double]) -> Double {
        guard !values.isEmpty else { return 0 }
        let mean = values.reduce(0, +) / Double(values.count)
        return (values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count)).squareRoot()
    }
}

/// The result of `Placement.plan`.
public struct PlacementPlan: Sendable, Equatable {
    public struct Move: Sendable, Hashable, CustomStringConvertible {
        public var vm: String
        /// nil: the VM was not placed before.
        public var from: String?
        public var to: String

        public var description: String { "\(vm): \(from ?? "(new)") -> \(to)" }
    }

    /// Where every placed VM runs after the plan.
    public var assignment: [String: String]
    public var moves: [Move]
    /// New VMs that fit on neither host.
    public var unplaced: [String]
    public var scoreBefore: Double
    public var scoreAfter: Double
}

/// Input that no plan can satisfy.
public enum PlacementError: Error, Sendable, Equatable, CustomStringConvertible {
    case wrongHostCount(Int)
    case tooManyVMs(count: Int, limit: Int)
    case duplicateVM(String)
    case unknownHost(vm: String, host: String)
    case unknownVM(String)
    case doesNotFit(vm: String, host: String)

    public var description: String {
        switch self {
        case .wrongHostCount(let count): "placement needs exactly 2 hosts, got \(count)"
        case .tooManyVMs(let count, let limit): "\(count) VMs exceed the limit of \(limit) (limits.max_vms)"
        case .duplicateVM(let name): "VM \"\(name)\" is listed twice"
        case .unknownHost(let vm, let host): "VM \"\(vm)\" is on \"\(host)\", which is not one of the hosts"
        case .unknownVM(let name): "no such VM: \(name)"
        case .doesNotFit(let vm, let host): "VM \"\(vm)\" does not fit on \(host) (capacity)"
        }
    }
}
