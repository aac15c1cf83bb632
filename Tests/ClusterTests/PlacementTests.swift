import Testing
@testable import Cluster

@Suite struct PlacementTests {
    static let hosts = [
        Placement.Host(name: "hostA", capacity: Resources(vcpus: 32, memoryMiB: 128 * 1024)),
        Placement.Host(name: "hostB", capacity: Resources(vcpus: 32, memoryMiB: 128 * 1024)),
    ]

    static let vms: [Placement.VM] = (0..<25).map { index in
        Placement.VM(
            name: String(format: "vm%02d", index), resources: Resources(vcpus: 1 + index % 4, memoryMiB: 1024 * (1 + index % 8)),
            preferredHost: index % 5 == 0 ? "hostB" : nil)
    }

    @Test func balancesTwentyFiveVMsAllOnOneHost() throws {
        let current = Dictionary(uniqueKeysWithValues: Self.vms.map { ($0.name, "hostA") })
        let plan = try Placement.plan(vms: Self.vms, hosts: Self.hosts, current: current)
        #expect(plan.scoreAfter < plan.scoreBefore)
        #expect(plan.scoreAfter < 0.1)
        #expect(plan.scoreBefore > Placement.overloadPenalty * 0.5)  // 62 vCPU on a 32-vCPU host
        #expect(!plan.moves.isEmpty && plan.moves.count <= 25)
        for move in plan.moves { #expect(move.from == "hostA" && move.to == "hostB") }
        // Capacity respected, every VM placed.
        #expect(plan.assignment.count == 25)
        #expect(Placement.fitsCapacity(Self.vms, Self.hosts, plan.assignment))
        #expect(!Placement.fitsCapacity(Self.vms, Self.hosts, current))
        // Deterministic.
        #expect(try Placement.plan(vms: Self.vms.reversed(), hosts: Self.hosts, current: current) == plan)
    }

    @Test func balancedClusterNeedsNoMoves() throws {
        let current = try Placement.plan(vms: Self.vms, hosts: Self.hosts, current: [:]).assignment
        let again = try Placement.plan(vms: Self.vms, hosts: Self.hosts, current: current)
        #expect(again.moves.isEmpty)
        #expect(again.scoreAfter == again.scoreBefore)
    }

    @Test func preferenceBreaksTies() throws {
        let vms = [Placement.VM(name: "a", resources: Resources(vcpus: 2, memoryMiB: 2048), preferredHost: "hostB"),
                   Placement.VM(name: "b", resources: Resources(vcpus: 2, memoryMiB: 2048), preferredHost: "hostA")]
        let plan = try Placement.plan(vms: vms, hosts: Self.hosts, current: ["a": "hostA", "b": "hostB"])
        #expect(plan.assignment == ["a": "hostB", "b": "hostA"])
        #expect(plan.moves.count == 2)
    }

    @Test func capacityIsHard() throws {
        let small = [Placement.Host(name: "hostA", capacity: Resources(vcpus: 4, memoryMiB: 4096)),
                     Placement.Host(name: "hostB", capacity: Resources(vcpus: 4, memoryMiB: 4096))]
        let vms = (0..<3).map { Placement.VM(name: "v\($0)", resources: Resources(vcpus: 2, memoryMiB: 3000)) }
        let plan = try Placement.plan(vms: vms, hosts: small, current: [:])
        #expect(plan.assignment.count == 2)
        #expect(plan.unplaced == ["v2"])
    }

    /// `vmha place VM…`: only the named VMs move, even if moving others would balance better.
    @Test func onlyNamedVMsMove() throws {
        let current = Dictionary(uniqueKeysWithValues: Self.vms.map { ($0.name, "hostA") })
        let plan = try Placement.plan(vms: Self.vms, hosts: Self.hosts, current: current, movable: ["vm03", "vm07"])
        #expect(Set(plan.moves.map(\.vm)) == ["vm03", "vm07"])
        #expect(plan.scoreAfter < plan.scoreBefore)
        let none = try Placement.plan(vms: Self.vms, hosts: Self.hosts, current: current, movable: [])
        #expect(none.moves.isEmpty)
    }

    /// `vmha place VM… --on HOST`: the named VMs go there (even against balance), others may not
    /// follow them; a pin that does not fit is an error, not a partial plan.
    @Test func pinnedVMsGoWhereTold() throws {
        let big = Self.hosts.map { Placement.Host(name: $0.name, capacity: Resources(vcpus: 64, memoryMiB: 256 * 1024)) }
        let current = try Placement.plan(vms: Self.vms, hosts: big, current: [:]).assignment
        let onA = Self.vms.map(\.name).filter { current[$0] == "hostA" }.prefix(2)
        let pins = Dictionary(uniqueKeysWithValues: onA.map { ($0, "hostB") })
        let plan = try Placement.plan(vms: Self.vms, hosts: big, current: current, movable: Set(onA), pinned: pins)
        #expect(plan.moves.map(\.vm).sorted() == onA.sorted())
        for vm in onA { #expect(plan.assignment[vm] == "hostB") }
        let small = [Placement.Host(name: "hostA", capacity: Resources(vcpus: 4, memoryMiB: 4096)),
                     Placement.Host(name: "hostB", capacity: Resources(vcpus: 4, memoryMiB: 4096))]
        let two = (0..<2).map { Placement.VM(name: "v\($0)", resources: Resources(vcpus: 2, memoryMiB: 3000)) }
        #expect(throws: PlacementError.doesNotFit(vm: "v0", host: "hostB")) {
            try Placement.plan(vms: two, hosts: small, current: ["v0": "hostA", "v1": "hostB"], pinned: ["v0": "hostB"])
        }
        #expect(throws: PlacementError.unknownVM("nope")) {
            try Placement.plan(vms: two, hosts: small, current: [:], movable: ["nope"])
        }
    }

    @Test func inputErrors() {
        #expect(throws: PlacementError.tooManyVMs(count: 25, limit: 24)) {
            try Placement.plan(vms: Self.vms, hosts: Self.hosts, current: [:], limits: .init(maxVMs: 24))
        }
        #expect(throws: PlacementError.unknownHost(vm: "vm00", host: "hostC")) {
            try Placement.plan(vms: Self.vms, hosts: Self.hosts, current: ["vm00": "hostC"])
        }
        #expect(throws: PlacementError.wrongHostCount(1)) { try Placement.plan(vms: [], hosts: [Self.hosts[0]], current: [:]) }
    }

    @Test func failoverOfTwentyFiveVMs() {
        let candidates = (0..<25).map { index in
            FailoverPlan.Candidate(
                name: String(format: "vm%02d", index), priority: index % 3 == 0 ? 100 : index,
                resources: Resources(vcpus: 2, memoryMiB: 4096),
                replica: index == 7 ? .inconsistent : (index == 8 ? .outdated : .upToDate))
        }
        let plan = FailoverPlan.make(
            lostHostVMs: candidates, survivorCapacity: Resources(vcpus: 48, memoryMiB: 96 * 1024),
            alreadyRunning: [Resources(vcpus: 8, memoryMiB: 16 * 1024)], maxConcurrentStarts: 2)
        let started = plan.waves.flatMap { $0 }
        // 40 vCPU / 80 GiB free → 20 VMs of 2 vCPU / 4 GiB.
        #expect(started.count == 20)
        #expect(plan.waves.allSatisfy { $0.count <= 2 })
        #expect(plan.waves.count == 10)
        // Priority 100 first (vm00, vm03, …), in name order.
        #expect(plan.waves[0] == ["vm00", "vm03"])
        #expect(!started.contains("vm07") && !started.contains("vm08"))
        #expect(plan.notStarted.contains(.init(name: "vm07", reason: .replicaNotUpToDate(.inconsistent))))
        #expect(plan.notStarted.contains(.init(name: "vm08", reason: .replicaNotUpToDate(.outdated))))
        let capacitySkips = plan.notStarted.filter { if case .insufficientCapacity = $0.reason { true } else { false } }
        #expect(capacitySkips.count == 3)
        // The lowest priorities are the ones left out.
        #expect(Set(capacitySkips.map(\.name)) == ["vm01", "vm02", "vm04"])
        #expect(plan.remaining == Resources(vcpus: 0, memoryMiB: 0))
    }

    /// 100 VMs (issue 19): all on one host, balanced within capacity by a deterministic plan;
    /// with `maxMoves` at 100 every needed move fits one plan.
    @Test func balancesOneHundredVMs() throws {
        let hosts = Self.hosts.map { Placement.Host(name: $0.name, capacity: Resources(vcpus: 128, memoryMiB: 512 * 1024)) }
        let vms = (0..<100).map { index in
            Placement.VM(
                name: String(format: "vm%03d-%@", index, String(repeating: "n", count: 40)),
                resources: Resources(vcpus: 1 + index % 4, memoryMiB: 1024 * (1 + index % 8)), preferredHost: index % 5 == 0 ? "hostB" : nil)
        }
        let current = Dictionary(uniqueKeysWithValues: vms.map { ($0.name, "hostA") })
        let started = ContinuousClock.now
        let plan = try Placement.plan(vms: vms, hosts: hosts, current: current, limits: .init(maxVMs: 100, maxMoves: 100))
        #expect(started.duration(to: .now) < .seconds(10), "a plan for 100 VMs is computed at once, not searched for minutes")
        #expect(plan.assignment.count == 100 && Placement.fitsCapacity(vms, hosts, plan.assignment))
        #expect(!Placement.fitsCapacity(vms, hosts, current), "250 vCPU do not fit one 128-vCPU host")
        #expect(plan.scoreAfter < plan.scoreBefore && plan.scoreAfter < 0.1)
        #expect(try Placement.plan(vms: vms.reversed(), hosts: hosts, current: current, limits: .init(maxVMs: 100, maxMoves: 100)) == plan)
        #expect(throws: PlacementError.tooManyVMs(count: 100, limit: 25)) { try Placement.plan(vms: vms, hosts: hosts, current: current) }
    }

    /// A host of 50 VMs fails (issue 19): its VMs start on the survivor in priority waves, as
    /// many as fit, the rest left with the reason.
    @Test func failoverOfFiftyOfOneHundredVMs() {
        let candidates = (0..<50).map { index in
            FailoverPlan.Candidate(
                name: String(format: "vm%03d", index), priority: index < 10 ? 100 : index % 7,
                resources: Resources(vcpus: 1, memoryMiB: 2048), replica: .upToDate)
        }
        let plan = FailoverPlan.make(
            lostHostVMs: candidates, survivorCapacity: Resources(vcpus: 96, memoryMiB: 192 * 1024),
            alreadyRunning: Array(repeating: Resources(vcpus: 1, memoryMiB: 2048), count: 50), maxConcurrentStarts: 4)
        let started = plan.waves.flatMap { $0 }
        // 46 vCPU / 92 GiB free → 46 of the 50.
        #expect(started.count == 46 && plan.notStarted.count == 4)
        #expect(plan.waves.allSatisfy { $0.count <= 4 } && plan.waves.count == 12)
        #expect(Set(started.prefix(10)) == Set((0..<10).map { String(format: "vm%03d", $0) }), "priority 100 first")
        #expect(plan.notStarted.allSatisfy { if case .insufficientCapacity = $0.reason { true } else { false } })
    }

    @Test func smallerVMStillFitsAfterABigOneDoesNot() {
        let plan = FailoverPlan.make(
            lostHostVMs: [.init(name: "big", priority: 10, resources: Resources(vcpus: 16, memoryMiB: 64000), replica: .upToDate),
                          .init(name: "small", priority: 1, resources: Resources(vcpus: 1, memoryMiB: 1024), replica: .upToDate)],
            survivorCapacity: Resources(vcpus: 8, memoryMiB: 8192), alreadyRunning: [], maxConcurrentStarts: 4)
        #expect(plan.waves == [["small"]])
        #expect(plan.notStarted == [.init(name: "big", reason: .insufficientCapacity(needed: Resources(vcpus: 16, memoryMiB: 64000), free: Resources(vcpus: 8, memoryMiB: 8192)))])
    }
}
