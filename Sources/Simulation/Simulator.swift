import Cluster
import Replication

/// One thing that goes wrong (or an operator does) in a schedule.
public enum Fault: Sendable, Codable, Equatable, CustomStringConvertible {
    /// The host dies (vmhad, QEMU, guests) and boots again after `downMS`.
    case crash(host: Int, downMS: Int64)
    /// vmhad restarts gracefully; the guests stay, paused on their disks.
    case restartDaemon(host: Int, downMS: Int64)
    case cutHeartbeat(network: Int, forMS: Int64)
    case cutReplication(forMS: Int64)
    /// Every link of the host: both heartbeat networks, replication, its path to the witness.
    case isolate(host: Int, forMS: Int64)
    case witnessDown(forMS: Int64)
    case cutWitness(host: Int, forMS: Int64)
    /// `vmha migrate VM --to` the host that does not run it.
    case switchover(vm: Int)
    /// Datagrams from the host to its peer are lost (both heartbeat networks); the peer's reach
    /// it. TCP cannot work one way: the replication link stalls.
    case oneWay(from: Int, forMS: Int64)
    /// Datagrams between the hosts take up to `World.slowDelayMS`, reordered.
    case slowNetwork(forMS: Int64)
    /// libvirt fails the next `times` starts of the VM's domain on the host.
    case startFails(host: Int, vm: Int, times: Int)
    /// Boots on the host take up to 15 s (a loaded hypervisor).
    case slowBoots(host: Int, forMS: Int64)
    /// `vmha place` on the host: the real `Placement` plan from its view, applied as switchovers.
    case place(host: Int)
    /// `vmha migrate VM --live` to the host that does not run it.
    case liveMigrate(vm: Int)

    public var description: String {
        func s(_ ms: Int64) -> String { "\(Double(ms) / 1000) s" }
        return switch self {
        case .crash(let h, let d): "crash \(World.hostName(h)) for \(s(d))"
        case .restartDaemon(let h, let d): "restart vmhad on \(World.hostName(h)) (down \(s(d)))"
        case .cutHeartbeat(let n, let d): "cut heartbeat network \(n) for \(s(d))"
        case .cutReplication(let d): "cut the replication network for \(s(d))"
        case .isolate(let h, let d): "isolate \(World.hostName(h)) for \(s(d))"
        case .witnessDown(let d): "witness down for \(s(d))"
        case .cutWitness(let h, let d): "cut \(World.hostName(h)) from the witness for \(s(d))"
        case .switchover(let vm): "vmha migrate \(World.vmName(vm)) to the other host"
        case .oneWay(let h, let d): "datagrams from \(World.hostName(h)) to its peer lost for \(s(d))"
        case .slowNetwork(let d): "datagrams between the hosts delayed up to \(Double(World.slowDelayMS) / 1000) s for \(s(d))"
        case .startFails(let h, let vm, let n): "libvirt fails the next \(n) start(s) of \(World.vmName(vm)) on \(World.hostName(h))"
        case .slowBoots(let h, let d): "boots on \(World.hostName(h)) take up to 15 s for \(s(d))"
        case .place(let h): "vmha place on \(World.hostName(h))"
        case .liveMigrate(let vm): "vmha migrate \(World.vmName(vm)) --live to the other host"
        }
    }
}

public struct Schedule: Sendable, Codable, Equatable {
    public struct Step: Sendable, Codable, Equatable {
        public var atMS: Int64
        public var fault: Fault
    }
    public var seed: UInt64
    public var steps: [Step]
    /// Clock rate errors of host a, host b and the witness, within `max_clock_drift_ppm`.
    public var driftPPM: [Int64]
    /// A domain boots in up to this long (0: at once).
    public var bootMS: Int64

    public init(seed: UInt64, steps: [Step], driftPPM: [Int64] = [0, 0, 0], bootMS: Int64 = 0) {
        self.seed = seed
        self.steps = steps
        self.driftPPM = driftPPM
        self.bootMS = bootMS
    }
}

/// Which faults a schedule draws from.
public enum FaultSet: Sendable {
    /// The first eight kinds (crash … switchover), perfect clocks, instant boots: what the
    /// fixed-seed regression tests were found with, so that their schedules stay the same.
    case classic
    /// Every kind, clock drift within the configured bound, boots of up to 3 s.
    case all
}

public struct ScheduleResult: Sendable, Codable, Equatable {
    public var schedule: Schedule
    public var violations: [Violation]
    public var simulatedMS: Int64
}

/// Runs schedules of faults against two hosts' real decision code (docs/simulator.md).
public enum Simulator {
    /// Faults start in [2 s, 40 s) and have all healed by 60 s; the invariants are checked every
    /// tick, convergence at 120 s.
    public static let faultWindowMS: Range<Int64> = 2_000..<40_000
    public static let healedByMS: Int64 = 60_000
    public static let endMS: Int64 = 120_000

    /// The schedule a seed stands for: one to `maxFaults` faults.
    public static func schedule(seed: UInt64, maxFaults: Int = 4, faults: FaultSet = .all) -> Schedule {
        var random = SplitMix64(seed: seed)
        func pick(_ range: ClosedRange<Int64>) -> Int64 { range.lowerBound + Int64(random.next() % UInt64(range.upperBound - range.lowerBound + 1)) }
        let count = 1 + Int(random.next() % UInt64(max(1, maxFaults)))
        var steps: [Schedule.Step] = []
        for _ in 0..<count {
            let at = pick(faultWindowMS.lowerBound...(faultWindowMS.upperBound - 1))
            let longest = max(1_000, healedByMS - at)
            func duration() -> Int64 { pick(500...min(20_000, longest)) }
            let host = Int(random.next() % 2)
            let fault: Fault = switch random.next() % (faults == .classic ? 8 : 14) {
            case 0: .crash(host: host, downMS: duration())
            case 1: .restartDaemon(host: host, downMS: duration())
            case 2: .cutHeartbeat(network: host, forMS: duration())
            case 3: .cutReplication(forMS: duration())
            case 4: .isolate(host: host, forMS: duration())
            case 5: .witnessDown(forMS: duration())
            case 6: .cutWitness(host: host, forMS: duration())
            case 7: .switchover(vm: Int(random.next() % UInt64(World.vmCount)))
            case 8: .oneWay(from: host, forMS: duration())
            case 9: .slowNetwork(forMS: duration())
            case 10: .startFails(host: host, vm: Int(random.next() % UInt64(World.vmCount)), times: 1 + Int(random.next() % 3))
            case 11: .slowBoots(host: host, forMS: duration())
            case 12: .place(host: host)
            default: .liveMigrate(vm: Int(random.next() % UInt64(World.vmCount)))
            }
            steps.append(Schedule.Step(atMS: at - at % World.tickMS, fault: fault))
        }
        guard faults == .all else { return Schedule(seed: seed, steps: steps.sorted { $0.atMS < $1.atMS }) }
        let bound = Int64(ClusterConfiguration.Timeouts().maxClockDriftPPM)
        let drift = (0..<3).map { _ in Int64(random.next() % UInt64(2 * bound + 1)) - bound }
        return Schedule(seed: seed, steps: steps.sorted { $0.atMS < $1.atMS }, driftPPM: drift, bootMS: 3000)
    }

    public static func run(
        seed: UInt64, maxFaults: Int = 4, faults: FaultSet = .all, trace: (@Sendable (String) -> Void)? = nil
    ) -> ScheduleResult {
        run(schedule(seed: seed, maxFaults: maxFaults, faults: faults), trace: trace)
    }

    public static func run(_ schedule: Schedule, trace: (@Sendable (String) -> Void)? = nil) -> ScheduleResult {
        var world = World(seed: schedule.seed ^ 0x5EED_F00D, driftPPM: schedule.driftPPM, bootMS: schedule.bootMS)
        world.trace = trace
        /// When each fault (by index) heals.
        var heals: [(at: Int64, index: Int)] = []
        var next = 0
        while world.now < endMS {
            world.tick()
            while next < schedule.steps.count, schedule.steps[next].atMS <= world.now {
                trace?("\(Double(world.now) / 1000) s fault: \(schedule.steps[next].fault)")
                if let heal = world.begin(schedule.steps[next].fault) { heals.append((heal, next)) }
                next += 1
            }
            for heal in heals where heal.at <= world.now {
                trace?("\(Double(world.now) / 1000) s healed: \(schedule.steps[heal.index].fault)")
                world.end(schedule.steps[heal.index].fault)
            }
            heals.removeAll { $0.at <= world.now }
        }
        for violation in world.convergenceViolations() { world.report(violation) }
        return ScheduleResult(schedule: schedule, violations: world.violations, simulatedMS: world.now)
    }
}

extension World {
    /// Starts a fault; returns when it heals (nil: instantaneous).
    mutating func begin(_ fault: Fault) -> Int64? {
        switch fault {
        case .crash(let host, let down):
            guard hosts[host].up else { return nil }
            hosts[host].crash()
            return now + down
        case .restartDaemon(let host, let down):
            guard hosts[host].up else { return nil }
            // `ClusterNode.stop`: restart-grace heartbeats first, then the volumes close.
            hosts[host].stoppingGracefully = true
            sendHeartbeats(from: host)
            hosts[host].stopDaemon()
            return now + down
        case .cutHeartbeat(let network, let duration):
            self.network.heartbeatCuts[network] += 1
            return now + duration
        case .cutReplication(let duration):
            network.replicationCuts += 1
            return now + duration
        case .isolate(let host, let duration):
            for n in 0..<2 { network.heartbeatCuts[n] += 1 }
            network.replicationCuts += 1
            network.witnessCuts[host] += 1
            return now + duration
        case .witnessDown(let duration):
            witness.up = false
            return now + duration
        case .cutWitness(let host, let duration):
            network.witnessCuts[host] += 1
            return now + duration
        case .switchover(let vm):
            if let host = (0..<2).first(where: { hosts[$0].up && hosts[$0].vms[vm].status.state == .prim }) {
                switchover(host: host, vm: vm)
            }
            return nil
        case .oneWay(let host, let duration):
            network.oneWayCuts[host] += 1
            return now + duration
        case .slowNetwork(let duration):
            network.slow += 1
            return now + duration
        case .startFails(let host, let vm, let times):
            hosts[host].vms[vm].startFailuresLeft += times
            return nil
        case .slowBoots(let host, let duration):
            slowBoots[host] += 1
            return now + duration
        case .place(let host):
            guard hosts[host].up else { return nil }
            place(from: host)
            return nil
        case .liveMigrate(let vm):
            if let host = (0..<2).first(where: { hosts[$0].up && hosts[$0].vms[vm].status.state == .prim }) {
                startLiveMigration(host: host, vm: vm)
            }
            return nil
        }
    }

    mutating func end(_ fault: Fault) {
        switch fault {
        case .crash(let host, _), .restartDaemon(let host, _):
            if !hosts[host].up { hosts[host].boot(at: now, timeouts: timeouts) }
        case .cutHeartbeat(let network, _):
            self.network.heartbeatCuts[network] -= 1
        case .cutReplication:
            network.replicationCuts -= 1
        case .isolate(let host, _):
            for n in 0..<2 { network.heartbeatCuts[n] -= 1 }
            network.replicationCuts -= 1
            network.witnessCuts[host] -= 1
        case .witnessDown:
            // A restarted witness remembers only its state file (the highest term, the unsynced
            // writer), and keeps quiet for a lease.
            witness = Witness(
                lease: WitnessLease(timing: timeouts.leaseTiming, startedAt: witnessClock, lastTerm: witness.highestTerm, unsyncedWriter: witness.unsyncedWriter),
                up: true, highestTerm: witness.highestTerm, unsyncedWriter: witness.unsyncedWriter)
        case .cutWitness(let host, _):
            network.witnessCuts[host] -= 1
        case .oneWay(let host, _):
            network.oneWayCuts[host] -= 1
        case .slowNetwork:
            network.slow -= 1
        case .slowBoots(let host, _):
            slowBoots[host] -= 1
        case .switchover, .startFails, .place, .liveMigrate:
            break
        }
    }
}
