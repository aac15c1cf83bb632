import ReplicationPolicy

/// How this host sees its peer's daemon.
public enum PeerState: String, Sendable, Codable {
    case unknown, alive, lost
}

/// Everything one host's policy decides on: plain values, read off the node at one instant.
public struct HostSnapshot: Sendable, Equatable {
    public struct VM: Sendable, Equatable {
        public var name: String
        public var status: ModuleStatus
        /// The local replica as its volumes show it now (metadata and replication links).
        public var localReplica: ReplicaState
        /// The peer's latest summary of this VM, and the one last acted on.
        public var peerSummary: Heartbeat.VMSummary?
        public var lastPeer: Heartbeat.VMSummary?
        /// Whose copy is newer, from the volumes' generations and the peer's latest summary's
        /// (`SyncDecision.relation`); nil when either is not known. Kept while the peer is away:
        /// what it last showed it had is still more than we have.
        public var peerData: DataRelation?
        /// The configured preferred host, else the first host.
        public var preferredHost: String
        public var failback: VMConfiguration.Failback
        /// Set when this host started the VM in a failover; only such a VM fails back by itself.
        public var arrivedByFailover: Bool
        /// Why a failover left it down (it is not retried until an operator or the peer acts).
        public var notStartedReason: String?
        /// Set when this host handed the VM over (switchover) and the peer has not been seen
        /// running it yet: the promote datagrams may all have been lost.
        public var handedOver: Bool
        public var priority: Int
        public var resources: Resources
        /// A checker moved it here within its hold-down (``RecoveryPolicy/isHeld(_:at:limits:)``):
        /// automatic failback leaves it alone until then.
        public var held: Bool

        public init(
            name: String, status: ModuleStatus, localReplica: ReplicaState, peerSummary: Heartbeat.VMSummary? = nil,
            lastPeer: Heartbeat.VMSummary? = nil, peerData: DataRelation? = nil, preferredHost: String, failback: VMConfiguration.Failback = .manual,
            arrivedByFailover: Bool = false, notStartedReason: String? = nil, handedOver: Bool = false, priority: Int = 0,
            resources: Resources, held: Bool = false
        ) {
            self.held = held
            self.name = name
            self.status = status
            self.localReplica = localReplica
            self.peerSummary = peerSummary
            self.lastPeer = lastPeer
            self.peerData = peerData
            self.preferredHost = preferredHost
            self.failback = failback
            self.arrivedByFailover = arrivedByFailover
            self.notStartedReason = notStartedReason
            self.handedOver = handedOver
            self.priority = priority
            self.resources = resources
        }

        /// What the module's flags become once it reached its status.
        public mutating func settleFlags() {
            Self.settleFlags(for: status.state, arrivedByFailover: &arrivedByFailover, notStartedReason: &notStartedReason, handedOver: &handedOver)
        }

        /// The one rule, for whoever keeps the flags (the policy's snapshot, `ClusterNode`'s
        /// modules, the simulator's hosts).
        public static func settleFlags(
            for state: ModuleState, arrivedByFailover: inout Bool, notStartedReason: inout String?, handedOver: inout Bool
        ) {
            if state == .prim || state == .alone {
                notStartedReason = nil
            } else {
                arrivedByFailover = false
            }
            if state != .second { handedOver = false }
        }
    }

    public var me: String
    public var peer: String
    /// In configuration order.
    public var vms: [VM]
    public var peerState: PeerState
    /// Whether any heartbeat of the peer was ever accepted.
    public var heardFromPeer: Bool
    /// Whether the peer's latest heartbeat echoes this incarnation (see `peerHeardUsRecently`).
    public var peerHeardUs: Bool
    /// The peer's latest heartbeat echoes this incarnation, and that echo is younger than the fence
    /// timeout: the peer heard us so recently that it has not called us lost, so it is not taking
    /// this host's VMs over on a silence — and should it start to, we fence before it may. An old
    /// echo is not enough: with our datagrams to it lost (one way), its heartbeats still echo the
    /// last one it heard while it fails over (vmha-sim seed 15860: an election on such an echo
    /// ran the VM on both hosts).
    public var peerHeardUsRecently: Bool { peerHeardUs && !mustFence }
    /// `PeerLiveness.status(at: now)`.
    public var peerAlive: Bool
    public var mustFence: Bool
    /// `LeaseClient.mayRunPrimary(at: now)`.
    public var mayRun: Bool
    /// `LeaseClient.peerOutdated`: whether the witness holds our peer outdated (nil: not known since
    /// this daemon started). Writes the peer misses are answered only on the vote *and* this.
    public var witnessHoldsPeerOutdated: Bool?
    public var hadLease: Bool
    public var fenced: Bool
    public var witnessConfigured: Bool
    public var writePolicy: UnreplicatedWritePolicy
    public var localCapacity: Resources
    public var maxConcurrentStarts: Int
    /// The peer's failed host checks (its heartbeats): no VM fails back to a host in trouble.
    public var peerFailingHostChecks: [String] = []

    public init(
        me: String, peer: String, vms: [VM], peerState: PeerState, heardFromPeer: Bool, peerHeardUs: Bool = true, peerAlive: Bool,
        mustFence: Bool,
        mayRun: Bool, witnessHoldsPeerOutdated: Bool? = true, hadLease: Bool, fenced: Bool, witnessConfigured: Bool, writePolicy: UnreplicatedWritePolicy,
        localCapacity: Resources, maxConcurrentStarts: Int
    ) {
        self.me = me
        self.peer = peer
        self.vms = vms
        self.peerState = peerState
        self.heardFromPeer = heardFromPeer
        self.peerHeardUs = peerHeardUs
        self.peerAlive = peerAlive
        self.mustFence = mustFence
        self.mayRun = mayRun
        self.witnessHoldsPeerOutdated = witnessHoldsPeerOutdated
        self.hadLease = hadLease
        self.fenced = fenced
        self.witnessConfigured = witnessConfigured
        self.writePolicy = writePolicy
        self.localCapacity = localCapacity
        self.maxConcurrentStarts = maxConcurrentStarts
    }

    /// Whether this host may answer writes its peer misses and take the peer's VMs over: the vote,
    /// and the witness's record that the peer's copy is outdated (so the peer gets no vote over them).
    public var mayRunAlone: Bool { mayRun && witnessHoldsPeerOutdated == true }

    /// Whether the peer holds every write this host answered, and this host is not about to write
    /// without it: sent with each lease request, so the witness knows whether the peer's copy is
    /// outdated (`WitnessLease.unsyncedWriter`). Conservative: anything unsure is `false`.
    public var peerHasOurWrites: Bool {
        guard peerState == .alive else { return false }
        return vms.allSatisfy { vm in
            switch vm.status.state {
            case .stop: true  // an operator stopped it; no start follows without one
            case .alone: false
            case .second: vm.peerData != .localNewer && vm.peerData != .diverged
            case .wait: vm.peerData == .same || vm.peerData == .peerNewer
            case .prim:
                vm.status.replica == .upToDate && vm.peerSummary?.state == .second && vm.peerSummary?.replica == .upToDate
                    && vm.peerData == .same
            }
        }
    }

    /// Whether the witness vote is wanted: while the peer is not heard and this host runs or may
    /// take over VMs. ALONE runs on the vote until the peer has taken its replica back. Also while
    /// the witness holds the peer outdated because of us (or we do not know whether it does):
    /// the next request tells it the peer is in sync again.
    public var wantsLease: Bool {
        guard witnessConfigured else { return false }
        if vms.contains(where: { $0.status.state == .alone }) { return true }
        if witnessHoldsPeerOutdated != false { return true }
        if peerState == .alive && !mustFence { return false }
        return vms.contains { [.alone, .wait, .prim].contains($0.status.state) }
    }
}

/// One thing the node does, in the order the policy returns them.
public enum HostDecision: Sendable, Equatable {
    /// The peer is heard again (`back`: after having been lost); forget what was acted on.
    case peerUp(back: Bool)
    /// No heartbeat on any network for the detection timeout.
    case peerLost
    /// The peer's summary of `vm` is the one acted on now.
    case acknowledgePeer(vm: String, Heartbeat.VMSummary)
    /// Apply the event to the VM's module and carry out the actions the machine returns.
    case feed(vm: String, ModuleEvent)
    /// The replica changed while the module neither runs nor holds the VM: no event, just the value.
    case setReplica(vm: String, ReplicaState)
    /// What primaries do with writes their peer misses.
    case setWritePolicy(UnreplicatedWritePolicy)
    /// The vote's window has ended.
    case leaseRanOut
    /// The peer has not echoed us and we hold no vote: pause these domains (they run here).
    case fence([String])
    /// Either the peer echoes us again or we hold the vote: resume these domains.
    case unfence([String])
    /// The peer is lost and we hold the vote: start its VMs here, wave by wave.
    case failover(FailoverPlan)
    /// `failback = "automatic"`: hand the VM back to its preferred host (a planned switchover).
    case failBack(String)
    /// We handed the VM over and the peer is still not running it: send the promote again, when
    /// `HostPolicy.promoteDue` says (the executor's timer).
    case resendPromote(String)
    /// The peer runs the VM we handed over (or gave it up): nothing more to send.
    case handOverCompleted(String)
    /// A line for the operator (log and `vmha status` events).
    case record(String)
}

/// The decisions of one host's control loop, as a pure function of what it knows: no I/O, no
/// clock, no randomness. The node feeds it a snapshot on every event (and at `nextLook`) and
/// carries the decisions out in order; the simulator (`vmha-sim`) runs two of them against a
/// model of the world.
public enum HostPolicy {
    /// The running VMs to pause now if this host must fence: no echo from the peer for the fence
    /// timeout and no vote (docs/witness.md). The node applies this rule also while its loop is
    /// busy with a long job (`ClusterNode.fenceWatchdog`): a live migration or a guest's
    /// shutdown can hold the loop past the deadline (vmha-sim seed 13232: the VM ran on both).
    public static func fenceNow(_ s: HostSnapshot) -> [String]? {
        let running = s.vms.filter { [.prim, .alone].contains($0.status.state) }.map(\.name)
        return !running.isEmpty && s.mustFence && !s.mayRun && !s.fenced ? running : nil
    }

    /// Whether a promote the peer sent for a VM is to be carried out. Each hand-over is numbered
    /// (the sender's last number + 1, carried in the promote and its resends; the receiver keeps
    /// the highest it accepted). A host that is itself handing the VM to the peer refuses a
    /// promote numbered at or below its own hand-over: it was sent before the peer saw ours — a
    /// resend of the hand-over that brought the VM here, delayed past our hand-back (vmha-sim
    /// seed 830429813: `vmha migrate` then `vmha place` over a slow network ran the VM on both
    /// hosts). A promote without a number (an older peer) is carried out as before.
    public static func acceptsPromote(handingOver: Bool, ownHandover: Int, promoteHandover: Int?) -> Bool {
        guard handingOver, let promoteHandover else { return true }
        return promoteHandover > ownHandover
    }

    /// When the next promote of a hand-over is due, after `sent` of them, the last at `last`: the
    /// first five 200 ms apart (UDP; the replay window admits one), then one a second until the
    /// peer runs the VM.
    public static func promoteDue(sent: Int, last: MonotonicInstant) -> MonotonicInstant {
        last + (sent < 5 ? .milliseconds(200) : .seconds(1))
    }

    /// When the snapshot's clock-derived inputs change with no event in between: the peer is
    /// called lost (`peerAlive` ends), the fence deadline passes (`mustFence`), the vote's
    /// window ends (`mayRun`). Everything else the policy reads changes only with an event
    /// (a datagram, a transition, a link change, a command), so looking again at these instants
    /// and on every event decides exactly as a loop that looked all the time.
    /// `now` is the instant the step's snapshot was read at; an instant returned may have passed
    /// by the time the loop waits (then it steps at once). `also`: the node's own timers (e.g. a
    /// promote resend).
    public static func nextLook(
        liveness: PeerLiveness.Status, lease: LeaseClient, at now: MonotonicInstant, also: [MonotonicInstant] = []
    ) -> MonotonicInstant? {
        var candidates = also
        if liveness.peerAlive { candidates.append(liveness.lostAt) }
        if !liveness.mustFence { candidates.append(liveness.fenceDeadline) }
        if let end = lease.suspendDeadline, lease.mayRunPrimary(at: now) { candidates.append(end) }
        return candidates.filter { $0 > now }.min()
    }

    public static func decide(_ snapshot: HostSnapshot) -> [HostDecision] {
        var s = snapshot
        var decisions: [HostDecision] = []
        /// VMs whose replica state a transition set in this tick: their `localReplica` was read
        /// before. (A transition that leaves the replica alone, e.g. SECOND→WAIT on peer loss,
        /// does not make it stale: vmha-sim found a failover in that same tick start a copy whose
        /// resync had begun, on the SECOND's stale UpToDate.)
        var changed: Set<String> = []

        func feed(_ index: Int, _ event: ModuleEvent) {
            decisions.append(.feed(vm: s.vms[index].name, event))
            guard let result = try? ModuleStateMachine.transition(from: s.vms[index].status, on: event) else { return }
            if result.status.replica != s.vms[index].status.replica { changed.insert(s.vms[index].name) }
            s.vms[index].status = result.status
            s.vms[index].settleFlags()
        }

        // Peer liveness edges.
        if s.peerAlive && s.heardFromPeer && s.peerState != .alive {
            decisions.append(.peerUp(back: s.peerState == .lost))
            s.peerState = .alive
            for i in s.vms.indices { s.vms[i].lastPeer = nil }
        } else if !s.peerAlive && s.peerState != .lost {
            decisions.append(.peerLost)
            s.peerState = .lost
            for i in s.vms.indices { feed(i, .peerLost) }
        }

        // The peer's view of each VM, when it changed.
        if s.peerState == .alive {
            for i in s.vms.indices {
                guard let summary = s.vms[i].peerSummary, summary != s.vms[i].lastPeer else { continue }
                // A waiting module may start the VM on the peer's word (the peer is secondary, or
                // elects us): only once the peer has heard this incarnation. Before, its summary
                // may predate a takeover it is making because it lost us (vmha-sim: a vmhad back
                // within the detection timeout promoted while the peer took the VM over).
                if s.vms[i].status.state == .wait && !s.peerHeardUsRecently { continue }
                decisions.append(.acknowledgePeer(vm: s.vms[i].name, summary))
                s.vms[i].lastPeer = summary
                let cutOff = s.vms[i].status.state == .alone || (s.vms[i].status.state == .prim && s.fenced)
                if cutOff, [.prim, .alone].contains(summary.state), !s.mayRun {
                    // We were cut off and never got the vote; the peer runs the VM, which it can only
                    // have started with the vote after we had stopped writing (docs/witness.md). Ours
                    // yields: what our guest wrote since is unacknowledged, and the resync from the
                    // peer overwrites it. A fenced PRIM is cut off too: the peer's restart grace kept
                    // it from going ALONE (vmha-sim found its domain resumed by the unfence).
                    decisions.append(
                        .record("\(s.vms[i].name): \(s.peer) took it over while we were cut off without the vote; stopping ours (its unacknowledged writes are discarded)"))
                    if s.vms[i].status.state == .prim { feed(i, .peerLost) }
                    feed(i, .witnessVoteDenied)
                } else if [.prim, .alone].contains(s.vms[i].status.state), s.vms[i].peerData == .peerNewer {
                    // The peer's copy holds writes ours lacks, and ours none it lacks (else they
                    // would have diverged): what our guest wrote since was never answered. Ours
                    // yields and becomes the peer's sync target (vmha-sim: a cut-off ALONE went
                    // PRIM over the newer copy of a peer that had run the VM on the vote).
                    decisions.append(.record("\(s.vms[i].name): \(s.peer)'s copy is newer than the one running here; stopping ours to resync from it"))
                    if s.vms[i].status.state == .prim { feed(i, .peerLost) }
                    feed(i, .witnessVoteDenied)
                }
                let role: PeerRole = switch summary.state {
                case .prim, .alone: .primary
                case .second: .secondary
                case .stop, .wait: .waiting
                }
                if role == .primary && s.vms[i].status.state == .wait && s.vms[i].peerData == .localNewer {
                    // Ours holds writes the running copy lacks: never its secondary (the resync
                    // would discard them). The peer yields by the rule above; then ours runs.
                    decisions.append(.record("\(s.vms[i].name): \(s.peer) runs an older copy than ours; waiting for it to yield"))
                    continue
                }
                feed(i, .peerConnected(peerRole: role, peerReplica: summary.replica))
            }
        }

        // Replica changes (resync progress) become events.
        for i in s.vms.indices where !changed.contains(s.vms[i].name) {
            var derived = s.vms[i].localReplica
            // A copy the peer's generations show to be older is Outdated (DRBD's disk state): it
            // may not run the VM until a resync from the peer made it UpToDate again.
            if derived == .upToDate && s.vms[i].peerData == .peerNewer && [.wait, .stop, .second].contains(s.vms[i].status.state) {
                derived = .outdated
            }
            let current = s.vms[i].status.replica
            guard derived != current else { continue }
            switch (current, derived) {
            case (_, .syncSource): feed(i, .resyncStarted(.source))
            case (_, .syncTarget): feed(i, .resyncStarted(.target))
            case (.syncSource, .upToDate), (.syncTarget, .upToDate): feed(i, .resyncFinished)
            case (_, .upToDate) where s.vms[i].status.state == .second:
                feed(i, .resyncStarted(.target))
                feed(i, .resyncFinished)
            default:
                if [.wait, .stop].contains(s.vms[i].status.state) || (s.vms[i].status.state == .second && derived == .outdated) {
                    decisions.append(.setReplica(vm: s.vms[i].name, derived))
                    s.vms[i].status.replica = derived
                }
            }
        }

        // Election: both waiting with usable replicas. The newer copy runs it; with the same
        // data, the preferred host (else the first). Diverged copies wait for an operator.
        if s.peerState == .alive {
            for i in s.vms.indices {
                let vm = s.vms[i]
                guard s.peerHeardUsRecently, vm.status.state == .wait, vm.status.replica.canBePrimary, let summary = vm.peerSummary,
                    summary.state == .wait || summary.state == .stop
                else { continue }
                switch vm.peerData {
                case .localNewer: feed(i, .promoteRequested)
                case .peerNewer, .diverged: break
                case .same, nil: if vm.preferredHost == s.me || !summary.replica.canBePrimary { feed(i, .promoteRequested) }
                }
            }
        }

        // A switchover whose promote datagrams were all lost would leave both SECOND for good
        // (vmha-sim, four faults): the host that handed over keeps asking until the peer runs it.
        if s.peerState == .alive {
            for vm in s.vms where vm.handedOver && vm.status.state == .second {
                guard let summary = vm.peerSummary else { continue }
                switch summary.state {
                case .second, .wait: decisions.append(.resendPromote(vm.name))
                case .prim, .alone, .stop: decisions.append(.handOverCompleted(vm.name))
                }
            }
        }

        // A secondary whose copy turned out newer than the peer's (the peer ran an older copy and
        // yielded) runs the VM: nobody else can without losing what it holds. Not one that has
        // just handed the VM over: the peer's summary it sees may predate the hand-over (a
        // delayed heartbeat from before its resync finished; vmha-sim seed 4454 at six faults:
        // the VM ran on both hosts), and the peer is about to promote.
        if s.peerState == .alive && s.peerHeardUsRecently {
            for i in s.vms.indices {
                guard s.vms[i].status.state == .second, !s.vms[i].handedOver, s.vms[i].peerData == .localNewer, s.vms[i].status.replica.canBePrimary,
                    let summary = s.vms[i].peerSummary, summary.state == .wait || summary.state == .stop
                else { continue }
                feed(i, .promoteRequested)
            }
        }

        // Witness lease: expiry and fencing. Without a witness there is no vote to wait for.
        func writePolicy() -> UnreplicatedWritePolicy {
            !s.witnessConfigured || s.mayRunAlone ? .complete : s.fenced ? .fail : .hold
        }
        func updateWritePolicy() {
            let policy = writePolicy()
            guard policy != s.writePolicy else { return }
            decisions.append(.setWritePolicy(policy))
            s.writePolicy = policy
        }
        updateWritePolicy()
        if s.hadLease && !s.mayRun {
            decisions.append(.leaseRanOut)
            s.hadLease = false
            for i in s.vms.indices where s.vms[i].status.state == .alone { feed(i, .leaseExpired) }
        }
        let running = s.vms.filter { [.prim, .alone].contains($0.status.state) }.map(\.name)
        if let vms = fenceNow(s) {
            s.fenced = true
            updateWritePolicy()
            decisions.append(.fence(vms))
        } else if s.fenced && (!s.mustFence || s.mayRun) {
            s.fenced = false
            updateWritePolicy()
            decisions.append(.unfence(running))
        }

        // Failover: the peer is lost, we hold the vote, and the witness holds the peer outdated.
        if s.peerState == .lost && s.mayRunAlone {
            let waiting = s.vms.indices.filter { s.vms[$0].status.state == .wait && s.vms[$0].notStartedReason == nil }
            if !waiting.isEmpty {
                let plan = FailoverPlan.make(
                    lostHostVMs: waiting.map {
                        FailoverPlan.Candidate(
                            name: s.vms[$0].name, priority: s.vms[$0].priority, resources: s.vms[$0].resources, replica: s.vms[$0].status.replica)
                    },
                    survivorCapacity: s.localCapacity,
                    alreadyRunning: s.vms.filter { [.prim, .alone].contains($0.status.state) }.map(\.resources),
                    maxConcurrentStarts: s.maxConcurrentStarts)
                decisions.append(.failover(plan))
            }
        }

        // failback = "automatic": a VM this host took over in a failover (or a host check's
        // evacuation) goes back to its preferred host once that host is back, its replica
        // UpToDate again, none of its host checks failing, and the VM's hold-down over.
        if s.peerState == .alive {
            for vm in s.vms {
                guard vm.failback == .automatic, vm.arrivedByFailover, !vm.held, s.peerFailingHostChecks.isEmpty,
                    vm.status == ModuleStatus(.prim, .upToDate),
                    vm.preferredHost == s.peer, let summary = vm.peerSummary, summary.state == .second, summary.replica == .upToDate
                else { continue }
                decisions.append(.failBack(vm.name))
            }
        }
        return decisions
    }
}
