import Cluster
import Replication
import ReplicationPolicy
import Volume

/// The model two `HostPolicy` instances run against: hosts that crash and restart, heartbeat
/// networks, a replication network and a witness that fail and heal, guests that write, volumes
/// that replicate and resync. Time is simulated (milliseconds); the only randomness is the
/// schedule's generator, so a seed replays a schedule exactly.
///
/// What runs is the daemon's own decision code: `HostPolicy`, `ModuleStateMachine`,
/// `FailoverPlan`, `PeerLiveness`, `LeaseClient` and `WitnessLease`. What is modelled is the I/O
/// around it (the node's executor, QEMU, libvirt, the replication link), with the same rules
/// `ClusterNode` applies (docs/simulator.md lists them).
struct World {
    static let vmCount = 3
    static let tickMS: Int64 = 50
    /// `Network.slow`: the longest a datagram between the hosts takes then (below detection).
    static let slowDelayMS: Int64 = 1200
    /// `ClusterNode.startRetryDelay`, `maxCrashRestarts`, `crashRestartWindow`.
    static let startRetryDelayMS: Int64 = 5000
    static let maxCrashRestarts = 3
    static let crashRestartWindowMS: Int64 = 600_000
    /// The replication link's peer timeout (`ClusterNode`: 2/3 of detection).
    static let linkTimeoutMS: Int64 = 2000
    static let reconnectIntervalMS: Int64 = 1000

    let timeouts = ClusterConfiguration.Timeouts()
    var now: Int64 = 0
    var random: SplitMix64
    var hosts: [Host]
    var witness: Witness
    var network = Network()
    var messages: [Message] = []
    /// Every write a guest had acknowledged, per VM.
    var acked: [Set<Int>]
    var nextWrite = 1
    var violations: [Violation] = []
    /// Receives one line per module transition and fault (`vmha-sim --trace`).
    var trace: (@Sendable (String) -> Void)?
    /// The witness's clock rate error (ppm).
    let witnessDriftPPM: Int64
    /// How long a boot takes at most (`Schedule.bootMS`), and on a host with slow boots.
    let bootMS: Int64
    var slowBoots = [0, 0]
    /// Boot durations come from their own generator: a schedule without boot times replays as before.
    var bootRandom: SplitMix64

    init(seed: UInt64, driftPPM: [Int64] = [0, 0, 0], bootMS: Int64 = 0) {
        random = SplitMix64(seed: seed)
        bootRandom = SplitMix64(seed: seed ^ 0xB007)
        self.bootMS = bootMS
        witnessDriftPPM = driftPPM[2]
        hosts = []
        witness = Witness(lease: WitnessLease(timing: ClusterConfiguration.Timeouts().leaseTiming, startedAt: Host.clock(0, driftPPM[2])))
        acked = Array(repeating: [], count: Self.vmCount)
        for index in 0..<2 {
            let vms = (0..<Self.vmCount).map { vm in
                // VM 0 and 2 prefer host a, VM 1 host b; the preferred host's copy starts as the data
                // (`LocalVolume.open` of a new pair: a generation of its own there, none on the other).
                let preferred = (vm == 1) == (index == 1)
                var generations = GenerationIdentifiers()
                if preferred { generations.startNewGeneration(UInt64(vm + 1) << 32 | 1, origin: .promotion) }
                return VMState(replica: [], consistent: preferred, generations: generations)
            }
            hosts.append(Host(index: index, driftPPM: driftPPM[index], vms: vms, incarnation: 1, startedAt: 0, timeouts: timeouts))
        }
        for index in 0..<2 { hosts[index].boot(at: 0, timeouts: timeouts) }
    }

    static func hostName(_ index: Int) -> String { index == 0 ? "a" : "b" }
    static func vmName(_ vm: Int) -> String { "vm\(vm + 1)" }
    static func preferredHost(_ vm: Int) -> String { vm == 1 ? "b" : "a" }
    static func vmIndex(_ name: String) -> Int { Int(name.dropFirst(2))! - 1 }

    /// The witness's clock now.
    var witnessClock: MonotonicInstant { Host.clock(now, witnessDriftPPM) }

    // MARK: - Running

    /// Advances simulated time by one tick: messages, heartbeats, control steps, replication,
    /// guest writes, then the invariants.
    mutating func tick() {
        now += Self.tickMS
        deliverMessages()
        for index in 0..<2 where hosts[index].up {
            if now >= hosts[index].nextHeartbeat { sendHeartbeats(from: index) }
        }
        for index in 0..<2 where hosts[index].up && hosts[index].liveRun != nil {
            advanceLiveRun(index)
            // `ClusterNode.fenceWatchdog`: the loop is busy, fencing is not.
            if let vms = HostPolicy.fenceNow(snapshot(index)) { carryOut(.fence(vms), host: index) }
        }
        for index in 0..<2 where hosts[index].up && hosts[index].liveRun == nil {
            // `ClusterNode.controlLoop`: a step on every change and at `HostPolicy.nextLook`.
            if hosts[index].wake || hosts[index].nextLookAt.map({ $0 <= hosts[index].clock(now) }) == true { controlStep(index) }
        }
        if now % 1000 == 0 {
            for index in 0..<2 where hosts[index].up { resumeLoop(index) }
        }
        for index in 0..<2 where hosts[index].up {
            for vm in 0..<Self.vmCount {
                if case .booting(let until) = hosts[index].vms[vm].domain, until <= now { hosts[index].vms[vm].domain = .running }
            }
        }
        for vm in 0..<Self.vmCount { replicate(vm) }
        if now % 100 == 0 {
            for index in 0..<2 where hosts[index].up {
                for vm in 0..<Self.vmCount { guestWrites(host: index, vm: vm) }
            }
        }
        checkSafety()
    }

    // MARK: - Messages

    enum Payload {
        case heartbeat(network: Int, incarnation: UInt64, timestamp: Int64, echo: (UInt64, Int64)?, vms: [Heartbeat.VMSummary], restartGrace: Int64?)
        case leaseRequest(LeaseRequest)
        case leaseResponse(LeaseResponse, incarnation: UInt64)
        case promote(vm: String, incarnation: UInt64, handover: Int)
        /// Live migration's datagrams (`PeerCommand`): prepareLive, livePrepared, liveRefused,
        /// abortLive, liveArrived.
        case live(PeerCommand.Kind, vm: Int, incarnation: UInt64)
    }

    struct Message {
        var deliverAt: Int64
        /// 0, 1: hosts; 2: the witness.
        var to: Int
        var from: Int
        var payload: Payload
    }

    mutating func send(_ payload: Payload, from: Int, to: Int) {
        var delay = Int64(random.next() % 40)
        if network.slow > 0 && to < 2 && from < 2 { delay += Int64(bootRandom.next() % UInt64(Self.slowDelayMS)) }
        messages.append(Message(deliverAt: now + delay, to: to, from: from, payload: payload))
    }

    mutating func deliverMessages() {
        let due = messages.filter { $0.deliverAt <= now }
        messages.removeAll { $0.deliverAt <= now }
        for message in due {
            if message.from < 2 && message.to < 2 && network.oneWayCuts[message.from] > 0 { continue }
            switch message.payload {
            case .heartbeat(let net, let incarnation, let timestamp, let echo, let vms, let grace):
                guard hosts[message.to].up, network.heartbeatUp[net] else { continue }
                hosts[message.to].receiveHeartbeat(
                    network: net, incarnation: incarnation, timestamp: timestamp, echo: echo, vms: vms, restartGrace: grace, at: now)
            case .leaseRequest(let request):
                guard witness.up, network.witnessReachable[message.from] else { continue }
                let response = witness.lease.handle(request, at: witnessClock)
                witness.highestTerm = max(witness.highestTerm, witness.lease.grant?.term ?? 0)
                witness.unsyncedWriter = witness.lease.unsyncedWriter
                send(.leaseResponse(response, incarnation: hosts[message.from].incarnation), from: 2, to: message.from)
            case .leaseResponse(let response, let incarnation):
                guard hosts[message.to].up, hosts[message.to].incarnation == incarnation, network.witnessReachable[message.to] else { continue }
                if case .granted = hosts[message.to].lease.receive(response, at: hosts[message.to].clock(now)) { hosts[message.to].hadLease = true }
                hosts[message.to].wake = true
            case .live(let kind, let vm, let incarnation):
                guard hosts[message.to].up, network.heartbeatUp.contains(true), hosts[message.from].incarnation == incarnation else { continue }
                receiveLive(kind, vm: vm, host: message.to)
            case .promote(let vm, let incarnation, let handover):
                guard hosts[message.to].up, network.heartbeatUp.contains(true), hosts[message.from].incarnation == incarnation else { continue }
                let index = Self.vmIndex(vm)
                let module = hosts[message.to].vms[index]
                // `ClusterNode.carryOut(_:_:)`: a resend that crossed the promotion is ignored, and
                // so is a stale one that crossed our own hand-back.
                guard HostPolicy.acceptsPromote(handingOver: module.handedOver, ownHandover: module.handover, promoteHandover: handover) else { continue }
                hosts[message.to].vms[index].handover = max(module.handover, handover)
                if module.status.state == .second || module.status.state == .wait { feed(host: message.to, vm: index, .promoteRequested) }
            }
        }
    }

    mutating func sendHeartbeats(from index: Int) {
        hosts[index].nextHeartbeat = now + timeouts.heartbeatInterval.milliseconds
        let host = hosts[index]
        let summaries = (0..<Self.vmCount).map {
            Heartbeat.VMSummary(
                name: Self.vmName($0), state: host.vms[$0].status.state, replica: host.vms[$0].status.replica,
                volumes: host.vms[$0].role == .closed ? [] : [host.vms[$0].generationSummary])
        }
        for net in 0..<2 where network.heartbeatUp[net] {
            send(
                .heartbeat(
                    network: net, incarnation: host.incarnation, timestamp: host.clock(now).nanoseconds, echo: host.heardFromPeer, vms: summaries,
                    restartGrace: host.stoppingGracefully ? timeouts.restartGrace.milliseconds : nil),
                from: index, to: 1 - index)
        }
        let snapshot = snapshot(index)
        if snapshot.wantsLease {
            let request = hosts[index].lease.makeRequest(at: host.clock(now), peerInSync: snapshot.peerHasOurWrites)
            send(.leaseRequest(request), from: index, to: 2)
        }
    }

    // MARK: - The node's executor

    func snapshot(_ index: Int) -> HostSnapshot {
        let host = hosts[index]
        let clock = host.clock(now)
        let live = host.liveness.status(at: clock)
        let vms = (0..<Self.vmCount).map { vm -> HostSnapshot.VM in
            let state = host.vms[vm]
            return HostSnapshot.VM(
                name: Self.vmName(vm), status: state.status, localReplica: localReplica(host: index, vm: vm),
                peerSummary: host.peerSummaries[Self.vmName(vm)], lastPeer: state.lastPeer,
                peerData: SyncDecision.relation(
                    local: state.role == .closed ? [] : [state.generationSummary], peer: host.peerSummaries[Self.vmName(vm)]?.volumes ?? [],
                    localWinsTies: Self.preferredHost(vm) == Self.hostName(index)),
                preferredHost: Self.preferredHost(vm),
                failback: vm == 2 ? .automatic : .manual, arrivedByFailover: state.arrivedByFailover,
                notStartedReason: state.notStartedReason, handedOver: state.handedOver, priority: vm, resources: Resources(vcpus: 1, memoryMiB: 1024))
        }
        return HostSnapshot(
            me: Self.hostName(index), peer: Self.hostName(1 - index), vms: vms, peerState: host.peerState,
            heardFromPeer: host.heardFromPeer != nil, peerHeardUs: host.peerHeardUs, peerAlive: live.peerAlive, mustFence: live.mustFence,
            mayRun: host.lease.mayRunPrimary(at: clock), witnessHoldsPeerOutdated: host.lease.peerOutdated, hadLease: host.hadLease, fenced: host.fenced, witnessConfigured: true,
            writePolicy: host.writePolicy, localCapacity: Resources(vcpus: 8, memoryMiB: 16384), maxConcurrentStarts: 2)
    }

    /// As `ClusterNode.readLocalReplica`: metadata, then the link's resync role.
    func localReplica(host index: Int, vm: Int) -> Cluster.ReplicaState {
        let state = hosts[index].vms[vm]
        guard state.role != .closed else { return .unknown }
        if let link = links[vm], link.resyncingUntil != nil {
            if link.primary == index { return .syncSource }
            return .syncTarget
        }
        return state.consistent ? .upToDate : .inconsistent
    }

    /// `ClusterNode.nextLook`.
    func nextLook(_ index: Int) -> MonotonicInstant? {
        let host = hosts[index]
        let clock = host.clock(now)
        var also: [MonotonicInstant] = []
        for vm in host.vms {
            if vm.handedOver, let last = vm.lastPromoteSent { also.append(HostPolicy.promoteDue(sent: vm.promotesSent, last: host.clock(last))) }
            if let retry = vm.startRetryAt, !host.fenced { also.append(host.clock(retry)) }
        }
        return HostPolicy.nextLook(liveness: host.liveness.status(at: clock), lease: host.lease, at: clock, also: also)
    }

    /// `ClusterNode.step`: due start retries, then the policy on a snapshot.
    mutating func controlStep(_ index: Int) {
        hosts[index].wake = false
        for vm in 0..<Self.vmCount where !hosts[index].fenced {
            guard let at = hosts[index].vms[vm].startRetryAt, at <= now else { continue }
            hosts[index].vms[vm].startRetryAt = nil
            restartCrashed(host: index, vm: vm)
        }
        let decisions = HostPolicy.decide(snapshot(index))
        for decision in decisions { carryOut(decision, host: index) }
        hosts[index].nextLookAt = nextLook(index)
    }

    /// `ClusterNode.restartCrashed`, within the crash-restart limit.
    mutating func restartCrashed(host index: Int, vm: Int) {
        guard [.prim, .alone].contains(hosts[index].vms[vm].status.state), !hosts[index].fenced else { return }
        hosts[index].vms[vm].crashRestarts.removeAll { now - $0 > Self.crashRestartWindowMS }
        guard hosts[index].vms[vm].crashRestarts.count < Self.maxCrashRestarts else { return }
        hosts[index].vms[vm].crashRestarts.append(now)
        hosts[index].vms[vm].domain = .none
        feed(host: index, vm: vm, .domainCrashed)
    }

    mutating func carryOut(_ decision: HostDecision, host index: Int) {
        switch decision {
        case .acknowledgePeer, .setReplica, .feed, .resendPromote, .handOverCompleted: break
        default: hosts[index].wake = true  // what `ClusterNode.carryOut` publishes
        }
        switch decision {
        case .peerUp:
            hosts[index].peerState = .alive
            for vm in 0..<Self.vmCount { hosts[index].vms[vm].lastPeer = nil }
        case .peerLost:
            hosts[index].peerState = .lost
        case .acknowledgePeer(let vm, let summary):
            hosts[index].vms[Self.vmIndex(vm)].lastPeer = summary
        case .feed(let vm, let event):
            feed(host: index, vm: Self.vmIndex(vm), event)
        case .setReplica(let vm, let replica):
            hosts[index].vms[Self.vmIndex(vm)].status.replica = replica
        case .setWritePolicy(let policy):
            hosts[index].writePolicy = policy
            for vm in 0..<Self.vmCount where hosts[index].vms[vm].role == .primary { hosts[index].vms[vm].writePolicy = policy }
        case .leaseRanOut:
            hosts[index].hadLease = false
        case .fence(let names):
            hosts[index].fenced = true
            for name in names where hosts[index].vms[Self.vmIndex(name)].domain.isActive { hosts[index].vms[Self.vmIndex(name)].domain = .paused }
        case .unfence(let names):
            hosts[index].fenced = false
            for name in names where hosts[index].vms[Self.vmIndex(name)].domain == .paused { hosts[index].vms[Self.vmIndex(name)].domain = .running }
        case .failover(let plan):
            for skipped in plan.notStarted { hosts[index].vms[Self.vmIndex(skipped.name)].notStartedReason = skipped.reason.description }
            for wave in plan.waves {
                for name in wave {
                    let vm = Self.vmIndex(name)
                    feed(host: index, vm: vm, .witnessVoteGranted)
                    if hosts[index].vms[vm].status.state == .alone { hosts[index].vms[vm].arrivedByFailover = true }
                }
            }
        case .failBack(let name):
            let vm = Self.vmIndex(name)
            hosts[index].vms[vm].arrivedByFailover = false
            switchover(host: index, vm: vm)
        case .resendPromote(let name):
            let vm = Self.vmIndex(name)
            let host = hosts[index]
            if let last = host.vms[vm].lastPromoteSent, host.clock(now) < HostPolicy.promoteDue(sent: host.vms[vm].promotesSent, last: host.clock(last)) { return }
            hosts[index].vms[vm].lastPromoteSent = now
            hosts[index].vms[vm].promotesSent += 1
            sendPeerCommand(.promote(vm: name, incarnation: hosts[index].incarnation, handover: host.vms[vm].handover), from: index)
        case .handOverCompleted(let name):
            hosts[index].vms[Self.vmIndex(name)].handedOver = false
        case .record(let line):
            trace?("\(Double(now) / 1000) s \(Self.hostName(index)): \(line)")
        }
    }

    /// `ClusterNode.place`: the real `Placement` plan from this host's view (its modules and the
    /// peer's summaries), each move a `vmha migrate` — a switchover by the host that runs it
    /// (asked with a hand-over datagram when that is the peer).
    mutating func place(from index: Int) {
        var current: [String: String] = [:]
        var vms: [Placement.VM] = []
        for vm in 0..<Self.vmCount {
            let name = Self.vmName(vm)
            vms.append(Placement.VM(name: name, resources: Resources(vcpus: 1, memoryMiB: 1024), preferredHost: Self.preferredHost(vm)))
            if [.prim, .alone].contains(hosts[index].vms[vm].status.state) {
                current[name] = Self.hostName(index)
            } else if let summary = hosts[index].peerSummaries[name], hosts[index].peerState == .alive, [.prim, .alone].contains(summary.state) {
                current[name] = Self.hostName(1 - index)
            }
        }
        let capacity = Resources(vcpus: 8, memoryMiB: 16384)
        guard let plan = try? Placement.plan(
            vms: vms, hosts: [.init(name: "a", capacity: capacity), .init(name: "b", capacity: capacity)], current: current)
        else { return }
        trace?("\(Double(now) / 1000) s \(Self.hostName(index)): place: \(plan.moves.map(\.description))")
        for move in plan.moves {
            guard let from = move.from else { continue }
            let runner = from == "a" ? 0 : 1
            // From the peer: the hand-over is a datagram on a heartbeat network.
            guard runner == index || network.heartbeatUp.contains(true) && network.oneWayCuts[index] == 0 && hosts[runner].up else { continue }
            switchover(host: runner, vm: Self.vmIndex(move.vm))
        }
    }

    // MARK: - Live migration (ClusterNode+LiveMigration.swift)

    /// `migrateLive`'s checks: PRIM and UpToDate here, the peer an UpToDate SECOND, in sync.
    mutating func startLiveMigration(host index: Int, vm: Int) {
        guard hosts[index].liveRun == nil, hosts[index].vms[vm].status == ModuleStatus(.prim, .upToDate), hosts[index].peerState == .alive,
            let summary = hosts[index].peerSummaries[Self.vmName(vm)], summary.state == .second, summary.replica == .upToDate,
            let link = links[vm], link.primary == index, link.resyncingUntil == nil, link.stalledSince == nil,
            hosts[index].vms[vm].domain == .running
        else { return }
        trace?("\(Double(now) / 1000) s \(Self.hostName(index)) \(Self.vmName(vm)): live migration to \(Self.hostName(1 - index)) begins")
        hosts[index].liveRun = LiveRun(vm: vm, phase: .preparing(until: now + 5000, nextSend: now))
    }

    mutating func send(live kind: PeerCommand.Kind, vm: Int, from index: Int) {
        sendPeerCommand(.live(kind, vm: vm, incarnation: hosts[index].incarnation), from: index)
    }

    /// `ClusterNode.sendPeerCommand`: one datagram on each heartbeat network that is up.
    mutating func sendPeerCommand(_ payload: Payload, from index: Int) {
        for net in 0..<2 where network.heartbeatUp[net] { send(payload, from: index, to: 1 - index) }
    }

    mutating func advanceLiveRun(_ index: Int) {
        guard let run = hosts[index].liveRun else { return }
        let target = 1 - index
        switch run.phase {
        case .preparing(let until, let nextSend):
            if now >= until {
                hosts[index].liveRun = nil  // no answer: refused, the VM keeps running here
                hosts[index].wake = true
            } else if now >= nextSend {
                send(live: .prepareLive, vm: run.vm, from: index)
                hosts[index].liveRun?.phase = .preparing(until: until, nextSend: now + 200)
            }
        case .migrating(let doneAt):
            if !network.replicationUp || !hosts[target].up {
                // libvirt fails: the guest never stopped here; the target closes its exports.
                for _ in 0..<3 { send(live: .abortLive, vm: run.vm, from: index) }
                trace?("\(Double(now) / 1000) s \(Self.hostName(index)) \(Self.vmName(run.vm)): live migration failed; it keeps running here")
                hosts[index].liveRun = nil
                hosts[index].wake = true
            } else if now >= doneAt {
                // The domain moved: its CPUs run on the target now, its writes held there.
                hosts[target].vms[run.vm].domain = .running
                hosts[index].vms[run.vm].domain = .none
                hosts[index].vms[run.vm].pendingWrite = nil
                trace?("\(Double(now) / 1000) s \(Self.vmName(run.vm)): domain moved to \(Self.hostName(target))")
                feed(host: index, vm: run.vm, .liveMigrationCompleted)
                hosts[index].liveRun?.phase = .arriving(until: now + 10_000, nextSend: now)
            }
        case .arriving(let until, let nextSend):
            if hosts[index].peerSummaries[Self.vmName(run.vm)]?.state == .prim || now >= until {
                hosts[index].liveRun = nil
                hosts[index].wake = true
            } else if now >= nextSend {
                send(live: .liveArrived, vm: run.vm, from: index)
                hosts[index].liveRun?.phase = .arriving(until: until, nextSend: now + 100)
            }
        }
    }

    mutating func receiveLive(_ kind: PeerCommand.Kind, vm: Int, host index: Int) {
        switch kind {
        case .prepareLive:
            // `prepareIncomingMigration`.
            let state = hosts[index].vms[vm]
            if state.incoming || (state.status == ModuleStatus(.second, .upToDate) && state.role == .secondary) {
                hosts[index].vms[vm].incoming = true
                send(live: .livePrepared, vm: vm, from: index)
            } else {
                send(live: .liveRefused, vm: vm, from: index)
            }
        case .livePrepared:
            guard let run = hosts[index].liveRun, run.vm == vm, case .preparing = run.phase else { return }
            hosts[index].liveRun?.phase = .migrating(doneAt: now + 1000 + Int64(bootRandom.next() % 3000))
        case .liveRefused:
            guard let run = hosts[index].liveRun, run.vm == vm, case .preparing = run.phase else { return }
            hosts[index].liveRun = nil
            hosts[index].wake = true
        case .abortLive:
            // `closeIncomingExports`: held changes fail; libvirt killed the incoming QEMU.
            guard hosts[index].vms[vm].incoming else { return }
            hosts[index].vms[vm].incoming = false
            if hosts[index].vms[vm].status.state == .second { hosts[index].vms[vm].domain = .none }
        case .liveArrived:
            guard hosts[index].vms[vm].incoming else { return }
            feed(host: index, vm: vm, .liveMigrationArrived)
        default:
            break
        }
    }

    /// `ClusterNode.switchover`: only with the peer's replica attached and in sync.
    mutating func switchover(host index: Int, vm: Int) {
        guard hosts[index].vms[vm].status.state == .prim, let link = links[vm], link.primary == index, link.attached,
            link.resyncingUntil == nil, hosts[index].peerSummaries[Self.vmName(vm)]?.replica == .upToDate
        else { return }
        feed(host: index, vm: vm, .switchoverRequested)
        guard hosts[index].vms[vm].status.state == .second else { return }
        hosts[index].vms[vm].handedOver = true
        hosts[index].vms[vm].handover += 1
        hosts[index].vms[vm].lastPromoteSent = now
        hosts[index].vms[vm].promotesSent = 1
        // One promote now, on each network; the loop resends (`HostPolicy.promoteDue`).
        sendPeerCommand(.promote(vm: Self.vmName(vm), incarnation: hosts[index].incarnation, handover: hosts[index].vms[vm].handover), from: index)
    }

    /// `ClusterNode.feed`: the machine's transition, then its actions in order.
    mutating func feed(host index: Int, vm: Int, _ event: ModuleEvent) {
        let before = hosts[index].vms[vm].status
        guard let result = try? ModuleStateMachine.transition(from: before, on: event) else { return }
        if !result.status.isValid {
            report(Violation(invariant: .validStates, at: now, detail: "\(Self.hostName(index)) \(Self.vmName(vm)): \(before) —\(event)→ \(result.status)"))
        }
        hosts[index].vms[vm].status = result.status
        if result.status != before || !result.actions.isEmpty { hosts[index].wake = true }  // `publish`
        if let trace, result.status != before || !result.actions.isEmpty {
            trace("\(Double(now) / 1000) s \(Self.hostName(index)) \(Self.vmName(vm)): \(before) —\(event)→ \(result.status) \(result.actions)")
        }
        for action in result.actions {
            switch action {
            case .promoteVolume:
                openVolume(host: index, vm: vm, as: .primary)
            case .demoteVolume:
                openVolume(host: index, vm: vm, as: .secondary)
            case .startDomain:
                startDomain(host: index, vm: vm)
            case .stopDomain:
                hosts[index].vms[vm].domain = .none
                hosts[index].vms[vm].pendingWrite = nil
            case .suspendIO:
                hosts[index].vms[vm].writePolicy = .fail
                if hosts[index].vms[vm].domain.isActive { hosts[index].vms[vm].domain = .paused }
            case .adoptMigratedDomain:
                // Promoted in place under the running domain; the held changes are released.
                hosts[index].vms[vm].incoming = false
                openVolume(host: index, vm: vm, as: .primary)
            case .startResync, .requestWitnessVote, .reportError:
                break
            }
        }
        // A module that does not run the VM here must not have a live domain here (but the one
        // a live migration is bringing in).
        if hosts[index].vms[vm].status.state == .second && !hosts[index].vms[vm].incoming { hosts[index].vms[vm].domain = .none }
        if ![.prim, .alone].contains(hosts[index].vms[vm].status.state) { hosts[index].vms[vm].startRetryAt = nil }
        var state = hosts[index].vms[vm]
        HostSnapshot.VM.settleFlags(
            for: state.status.state, arrivedByFailover: &state.arrivedByFailover, notStartedReason: &state.notStartedReason,
            handedOver: &state.handedOver)
        hosts[index].vms[vm] = state
    }

    mutating func openVolume(host index: Int, vm: Int, as role: VMState.Role) {
        if role == .secondary, hosts[index].vms[vm].role == .primary { hosts[index].vms[vm].pendingWrite = nil }
        if let link = links[vm], link.primary == index || link.secondary == index { dropLink(vm) }
        hosts[index].vms[vm].role = role
        hosts[index].vms[vm].writePolicy = hosts[index].writePolicy
        // `LocalVolume.promote` / `demote` on a freshly opened volume.
        hosts[index].vms[vm].ownGenerationStarted = false
        if role == .primary {
            if !hosts[index].vms[vm].primaryFlag {
                hosts[index].vms[vm].generations.startNewGeneration(random.next() | 1, origin: .promotion)
                hosts[index].vms[vm].ownGenerationStarted = true
            }
            hosts[index].vms[vm].primaryFlag = true
        } else {
            hosts[index].vms[vm].primaryFlag = false
        }
    }

    mutating func startDomain(host index: Int, vm: Int) {
        // Invariant 2: a guest starts only on a replica that holds every acknowledged write.
        let missing = acked[vm].subtracting(hosts[index].vms[vm].replica)
        if !missing.isEmpty {
            report(
                Violation(
                    invariant: .noAcknowledgedWriteLost, at: now,
                    detail: "\(Self.vmName(vm)) started on \(Self.hostName(index)) without \(missing.count) acknowledged write(s), e.g. #\(missing.min()!)"))
        }
        if hosts[index].vms[vm].domain.isActive { return }  // `ClusterNode.startDomain`: resumes it
        if hosts[index].vms[vm].startFailuresLeft > 0 {
            // libvirt refused: the action fails, the loop tries again later.
            hosts[index].vms[vm].startFailuresLeft -= 1
            hosts[index].vms[vm].startRetryAt = now + Self.startRetryDelayMS
            trace?("\(Double(now) / 1000) s \(Self.hostName(index)) \(Self.vmName(vm)): domain start failed")
            return
        }
        let longest = slowBoots[index] > 0 ? 15_000 : bootMS
        let boot = longest > 0 ? Int64(bootRandom.next() % UInt64(longest)) : 0
        hosts[index].vms[vm].domain = boot > 0 ? .booting(until: now + boot) : .running
    }

    /// `resumeLoop`: domains paused by an I/O error on a running module are resumed unless fenced.
    mutating func resumeLoop(_ index: Int) {
        guard !hosts[index].fenced else { return }
        for vm in 0..<Self.vmCount where [.prim, .alone].contains(hosts[index].vms[vm].status.state) && hosts[index].vms[vm].domain == .paused {
            hosts[index].vms[vm].domain = .running
        }
    }

    // MARK: - Replication

    struct Link {
        var primary: Int
        var secondary: Int
        var attachedAt: Int64
        var attached: Bool { true }
        /// Set while the secondary is a sync target.
        var resyncingUntil: Int64?
        /// The replication network was cut at this time: writes wait until the link times out.
        var stalledSince: Int64?
    }

    var links: [Int: Link] = [:]
    var nextConnectAttempt: [Int: Int64] = [:]

    /// A link change wakes both hosts' loops (`PrimaryReplication` and `ReplicaServer` report it).
    mutating func wakeLinkHosts() { for index in 0..<2 { hosts[index].wake = true } }

    mutating func dropLink(_ vm: Int) {
        if links[vm] != nil { wakeLinkHosts() }
        links[vm] = nil
        nextConnectAttempt[vm] = now + Self.reconnectIntervalMS
    }

    /// `PrimaryReplication` and `ReplicaServer` for one VM: connect, decide, resync, time out.
    mutating func replicate(_ vm: Int) {
        let primaries = (0..<2).filter { hosts[$0].up && hosts[$0].vms[vm].role == .primary }
        if var link = links[vm] {
            let still = hosts[link.primary].up && hosts[link.secondary].up && hosts[link.primary].vms[vm].role == .primary
                && hosts[link.secondary].vms[vm].role == .secondary
            guard still else { return dropLink(vm) }
            if !network.replicationUp {
                if link.stalledSince == nil { link.stalledSince = now }
                if now - link.stalledSince! >= Self.linkTimeoutMS { return dropLink(vm) }
            } else {
                link.stalledSince = nil
            }
            if let until = link.resyncingUntil, now >= until, link.stalledSince == nil {
                hosts[link.secondary].vms[vm].replica = hosts[link.primary].vms[vm].replica
                hosts[link.secondary].vms[vm].consistent = true
                hosts[link.primary].vms[vm].generations.resyncFinishedAsSource()
                hosts[link.secondary].vms[vm].generations.resyncFinishedAsTarget(sourceCurrent: hosts[link.primary].vms[vm].generations.current)
                hosts[link.primary].vms[vm].answeredWithoutPeer = false
                hosts[link.secondary].vms[vm].answeredWithoutPeer = false
                link.resyncingUntil = nil
                wakeLinkHosts()
            }
            links[vm] = link
            return
        }
        guard primaries.count == 1, let primary = primaries.first, network.replicationUp, now >= nextConnectAttempt[vm, default: 0] else { return }
        let secondary = 1 - primary
        guard hosts[secondary].up, hosts[secondary].vms[vm].role == .secondary else { return }
        nextConnectAttempt[vm] = now + Self.reconnectIntervalMS
        let source = hosts[primary].vms[vm], target = hosts[secondary].vms[vm]
        // Acknowledged writes on each side that the other lacks: both answered writes alone, two
        // primaries in effect. The real link refuses (split brain); here it is invariant 1's violation.
        let theirs = target.replica.subtracting(source.replica).intersection(acked[vm])
        let ours = source.replica.subtracting(target.replica).intersection(acked[vm])
        if !theirs.isEmpty && !ours.isEmpty {
            report(
                Violation(
                    invariant: .neverTwoPrimaries, at: now,
                    detail: "\(Self.vmName(vm)): \(Self.hostName(secondary)) holds \(theirs.count) acknowledged write(s) primary \(Self.hostName(primary)) lacks, and lacks \(ours.count) of its"))
        }
        guard source.consistent else { return }
        // The handshake's decision (`PrimaryReplication`): the primary is never a sync target,
        // and diverged data is never resolved here.
        let decision = SyncDecision.decide(local: source.replicaState, peer: target.replicaState, localWinsTies: true)
        var discardTarget = false
        switch decision {
        case .noSync, .syncSourceIncremental, .fullSync(source: .local): break
        case .splitBrain:
            // `PrimaryReplication` with the default policy: only rule 0 (the target answered
            // nothing alone) settles it.
            let resolution = SplitBrainResolution.resolve(
                policy: .disconnect, peerPolicy: .disconnect, local: source.replicaState, peer: target.replicaState, localIsPrimary: true)
            guard case .discardPeer = resolution else { fallthrough }
            discardTarget = true
        default:
            trace?("\(Double(now) / 1000) s \(Self.vmName(vm)): link refused (\(decision)): \(Self.hostName(primary)) is primary")
            return
        }
        if !theirs.isEmpty {
            // The resync would overwrite answered writes: the primary runs an older copy.
            report(
                Violation(
                    invariant: .noAcknowledgedWriteLost, at: now,
                    detail: "\(Self.vmName(vm)): resyncing \(Self.hostName(secondary)) from \(Self.hostName(primary)) discards \(theirs.count) acknowledged write(s)"))
        }
        var link = Link(primary: primary, secondary: secondary, attachedAt: now)
        hosts[primary].vms[vm].ownGenerationStarted = false  // `LocalVolume.setReplicator`
        if decision != .noSync || target.replica != source.replica || !target.consistent {
            // An incremental (or full) resync (held writes are dirty bits even with equal
            // generations): the target is Inconsistent, with the source's generation, until done.
            hosts[secondary].vms[vm].consistent = false
            if discardTarget {
                hosts[secondary].vms[vm].generations.discardForSplitBrain(sourceCurrent: source.generations.current)
            } else {
                hosts[secondary].vms[vm].generations.current = source.generations.current
            }
            link.resyncingUntil = now + 300 + Int64(random.next() % 700)
        }
        links[vm] = link
        wakeLinkHosts()
    }

    // MARK: - Guests

    /// A guest writes one record at a time, as the test guest does; each is acknowledged only by
    /// the rules `LocalVolume` applies (protocol C, or the unreplicated-write policy).
    mutating func guestWrites(host index: Int, vm: Int) {
        let state = hosts[index].vms[vm]
        guard state.domain == .running, state.role == .primary else { return }
        let write = state.pendingWrite ?? nextWrite
        if state.pendingWrite == nil { nextWrite += 1 }
        let link = links[vm]
        if let link, link.primary == index, link.stalledSince == nil {
            hosts[index].vms[vm].replica.insert(write)
            hosts[1 - index].vms[vm].replica.insert(write)
            acknowledge(write, vm: vm, host: index)
            return
        }
        if link != nil {
            hosts[index].vms[vm].pendingWrite = write  // waits for the link's ack or its timeout
            return
        }
        switch state.writePolicy {
        case .complete:
            hosts[index].vms[vm].startOwnGenerationIfNeeded(&random)
            hosts[index].vms[vm].replica.insert(write)
            acknowledge(write, vm: vm, host: index)
        case .hold:
            // Written here, answered only once the peer has it (never, if the peer takes over).
            hosts[index].vms[vm].replica.insert(write)
            hosts[index].vms[vm].pendingWrite = write
        case .fail:
            hosts[index].vms[vm].pendingWrite = nil
            hosts[index].vms[vm].domain = .paused  // QEMU's error_policy='stop'
        }
    }

    mutating func acknowledge(_ write: Int, vm: Int, host index: Int) {
        hosts[index].vms[vm].pendingWrite = nil
        acked[vm].insert(write)
    }

    // MARK: - Invariants checked every tick

    /// The first violation of each invariant is kept (later ones are usually its consequences).
    mutating func report(_ violation: Violation) {
        guard !violations.contains(where: { $0.invariant == violation.invariant }) else { return }
        violations.append(violation)
    }

    mutating func checkSafety() {
        for vm in 0..<Self.vmCount {
            // Invariant 1: two hosts never both run a VM's guest unpaused on a primary volume.
            let running = (0..<2).filter {
                guard hosts[$0].up, hosts[$0].vms[vm].role == .primary else { return false }
                if case .booting = hosts[$0].vms[vm].domain { return true }
                return hosts[$0].vms[vm].domain == .running
            }
            if running.count == 2 {
                report(Violation(invariant: .neverTwoPrimaries, at: now, detail: "\(Self.vmName(vm)) runs on both hosts"))
            }
            // Invariant 3: a module's volumes match its state.
            for index in 0..<2 where hosts[index].up {
                let state = hosts[index].vms[vm]
                let runs = [.prim, .alone].contains(state.status.state)
                if !state.status.isValid || (runs && state.role != .primary) || (state.status.state == .second && state.role != .secondary) {
                    report(
                        Violation(invariant: .validStates, at: now, detail: "\(Self.hostName(index)) \(Self.vmName(vm)): \(state.status) with a \(state.role) volume"))
                }
            }
        }
    }

    /// Invariant 4, after the faults healed and the cluster had time to settle: every VM runs on
    /// exactly one host, the other holds an UpToDate, identical replica, and nothing acknowledged
    /// is missing from either.
    func convergenceViolations() -> [Violation] {
        var found: [Violation] = []
        for vm in 0..<Self.vmCount {
            let states = (0..<2).map { hosts[$0].vms[vm].status }
            // A VM whose domain libvirt failed more often than the crash-restart limit is left down
            // by design (with the reason in `vmha status`): it does not fit, for invariant 4.
            let gaveUp = { (h: Int) in
                hosts[h].vms[vm].crashRestarts.count >= Self.maxCrashRestarts && hosts[h].vms[vm].domain == .none
                    && hosts[h].vms[vm].startRetryAt == nil
            }
            let runners = (0..<2).filter { states[$0].state == .prim && (hosts[$0].vms[vm].domain == .running || gaveUp($0)) }
            let name = Self.vmName(vm)
            guard runners.count == 1, let runner = runners.first else {
                found.append(Violation(invariant: .converges, at: now, detail: "\(name) is \(states[0]) on a, \(states[1]) on b"))
                continue
            }
            let other = 1 - runner
            if states[other] != ModuleStatus(.second, .upToDate) || states[runner].replica != .upToDate {
                found.append(Violation(invariant: .converges, at: now, detail: "\(name): \(states[runner]) on \(Self.hostName(runner)), \(states[other]) on \(Self.hostName(other))"))
            } else if hosts[0].vms[vm].replica.union(hosts[1].vms[vm].replica).intersection(acked[vm]) != acked[vm]
                || hosts[runner].vms[vm].replica != hosts[other].vms[vm].replica
            {
                found.append(Violation(invariant: .converges, at: now, detail: "\(name): the replicas differ after the resync"))
            }
        }
        return found
    }
}

extension Duration {
    var milliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
}
