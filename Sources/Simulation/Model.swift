import Cluster
import Replication
import ReplicationPolicy
import Volume

/// One VM on one host: the module, its volumes, its domain, and the data its replica holds.
struct VMState {
    enum Role: CustomStringConvertible {
        case closed, primary, secondary
        var description: String { switch self { case .closed: "closed"; case .primary: "primary"; case .secondary: "secondary" } }
    }
    enum Domain: Equatable {
        case none
        /// Started, not yet writing (QEMU holds the disks writable: counts as running for
        /// invariant 1).
        case booting(until: Int64)
        case running, paused

        /// QEMU runs with the disks open (booting, running or paused).
        var isActive: Bool { self != .none }
    }

    var status = ModuleStatus(.stop, .unknown)
    var lastPeer: Heartbeat.VMSummary?
    var arrivedByFailover = false
    var notStartedReason: String?
    var handedOver = false
    /// `VMModule.handover`: the highest hand-over number sent or accepted.
    var handover = 0
    var lastPromoteSent: Int64?
    var promotesSent = 0
    /// `VMModule.startRetryAt`: a failed domain start is tried again then.
    var startRetryAt: Int64?
    /// `VMModule.crashRestarts`: restarts in the last `crashRestartWindow`.
    var crashRestarts: [Int64] = []
    /// Fault: this many of the next domain starts fail (libvirt).
    var startFailuresLeft = 0
    /// Target of a live migration: exports open with guest changes held (`incomingExports`).
    var incoming = false
    var role = Role.closed
    var writePolicy = UnreplicatedWritePolicy.complete
    var domain = Domain.none
    /// The writes this host's copy holds (survives crashes: it is the disk).
    var replica: Set<Int>
    /// The metadata's consistency flag (survives crashes): false while a resync target.
    var consistent: Bool
    /// The metadata's generations (survive crashes), moved by the rules `LocalVolume` applies.
    var generations: GenerationIdentifiers
    /// The metadata's primary flag (survives crashes; cleared when the volume opens as secondary).
    var primaryFlag = false
    /// `LocalVolume.ownGenerationStarted`: per open volume, not persisted.
    var ownGenerationStarted = false
    /// The metadata's answered-without-peer flag (survives crashes; a finished resync clears it).
    var answeredWithoutPeer = false
    /// The guest's one outstanding write, not yet answered.
    var pendingWrite: Int?

    init(replica: Set<Int>, consistent: Bool, generations: GenerationIdentifiers) {
        self.replica = replica
        self.consistent = consistent
        self.generations = generations
    }

    /// What the heartbeat carries of this copy (one volume per VM here).
    var generationSummary: GenerationSummary {
        replicaState.summary
    }

    /// What the handshake and the heartbeat compare.
    var replicaState: Volume.ReplicaState {
        Volume.ReplicaState(generations: generations, consistency: consistent ? .consistent : .inconsistent, answeredWithoutPeer: answeredWithoutPeer)
    }

    /// `LocalVolume.startOwnGenerationIfNeeded`: before the first answered write the peer misses.
    mutating func startOwnGenerationIfNeeded(_ random: inout SplitMix64) {
        answeredWithoutPeer = true
        guard !ownGenerationStarted else { return }
        ownGenerationStarted = true
        generations.startNewGeneration(random.next() | 1, origin: .continuedAsPrimary)
    }
}

/// `ClusterNode.migrateLive` on the runner, one phase at a time.
struct LiveRun {
    enum Phase {
        /// `prepareLive` every 200 ms until the answer, for 5 s.
        case preparing(until: Int64, nextSend: Int64)
        /// libvirt moves the domain; done at `doneAt` unless the link or the target fails.
        case migrating(doneAt: Int64)
        /// Demoted; `liveArrived` every 100 ms until the peer's heartbeat says PRIM, for 10 s.
        case arriving(until: Int64, nextSend: Int64)
    }
    var vm: Int
    var phase: Phase
}

/// One host: what `ClusterNode` keeps between control steps, and the VMs it holds.
struct Host {
    let index: Int
    /// This host's clock rate error (ppm, within `max_clock_drift_ppm`): every instant the
    /// host's code sees is its own clock's reading.
    let driftPPM: Int64
    var vms: [VMState]
    var up = true
    var incarnation: UInt64
    var liveness: PeerLiveness
    var lease: LeaseClient
    var hadLease = false
    var fenced = false
    var writePolicy = UnreplicatedWritePolicy.complete
    var peerState = PeerState.unknown
    var heardFromPeer: (UInt64, Int64)?
    var peerHeardUs = false
    var peerIncarnation: UInt64 = 0
    var restartingIncarnation: UInt64?
    var peerSummaries: [String: Heartbeat.VMSummary] = [:]
    var nextHeartbeat: Int64 = 0
    /// The highest heartbeat timestamp per network of the peer's incarnation: `HeartbeatDecoder`
    /// refuses a sequence that is not higher (a delayed, reordered datagram).
    var highestHeard: [Int64?] = [nil, nil]
    /// Sends restart-grace heartbeats until it goes down (a graceful vmhad restart).
    var stoppingGracefully = false
    /// Something the control loop reads changed since its last step (`ClusterNode.stateChanged`).
    var wake = true
    /// The live migration this host's loop is running (`ClusterNode.migrateLive`): no policy
    /// step until it ends.
    var liveRun: LiveRun?
    /// When the loop looks again with no event (`HostPolicy.nextLook` after its last step).
    var nextLookAt: MonotonicInstant?

    init(index: Int, driftPPM: Int64, vms: [VMState], incarnation: UInt64, startedAt: Int64, timeouts: ClusterConfiguration.Timeouts) {
        self.index = index
        self.driftPPM = driftPPM
        self.vms = vms
        self.incarnation = incarnation
        (liveness, lease) = Self.fresh(index: index, incarnation: incarnation, at: Self.clock(startedAt, driftPPM), timeouts: timeouts)
    }

    /// A clock that runs `ppm` fast (or slow) against simulated time `ms`.
    static func clock(_ ms: Int64, _ ppm: Int64) -> MonotonicInstant { .init(nanoseconds: ms * 1_000_000 + ms * ppm) }

    /// This host's clock at simulated time `ms`.
    func clock(_ ms: Int64) -> MonotonicInstant { Self.clock(ms, driftPPM) }

    static func fresh(index: Int, incarnation: UInt64, at time: MonotonicInstant, timeouts: ClusterConfiguration.Timeouts) -> (PeerLiveness, LeaseClient) {
        let timing = timeouts.leaseTiming
        return (
            PeerLiveness(
                networks: 2, detectionTimeout: timeouts.detection, fenceTimeout: timing.fenceTimeout(detection: timeouts.detection),
                startedAt: time),
            LeaseClient(host: World.hostName(index), timing: timing, firstRequestID: incarnation << 20)
        )
    }

    /// vmhad starts: a new incarnation, every module WAIT with its volumes open as secondaries.
    mutating func boot(at time: Int64, timeouts: ClusterConfiguration.Timeouts) {
        up = true
        stoppingGracefully = false
        if time > 0 { incarnation += 1 }
        (liveness, lease) = Self.fresh(index: index, incarnation: incarnation, at: clock(time), timeouts: timeouts)
        wake = true
        highestHeard = [nil, nil]
        hadLease = false
        liveRun = nil
        fenced = false
        writePolicy = .complete
        peerState = .unknown
        heardFromPeer = nil
        peerHeardUs = false
        restartingIncarnation = nil
        peerSummaries = [:]
        nextHeartbeat = time
        for vm in vms.indices {
            vms[vm].status = ModuleStatus(.wait, vms[vm].consistent ? .upToDate : .inconsistent)
            vms[vm].lastPeer = nil
            vms[vm].arrivedByFailover = false
            vms[vm].handedOver = false
            vms[vm].handover = 0
            vms[vm].startRetryAt = nil
            vms[vm].crashRestarts = []
            vms[vm].incoming = false
            vms[vm].notStartedReason = nil
            vms[vm].role = .secondary
            vms[vm].primaryFlag = false
            vms[vm].ownGenerationStarted = false
            vms[vm].pendingWrite = nil
        }
    }

    /// The host dies: vmhad, QEMU and the guests; the disks (replica data, metadata) stay.
    mutating func crash() {
        up = false
        for vm in vms.indices {
            vms[vm].domain = .none
            vms[vm].pendingWrite = nil
        }
    }

    /// vmhad stops (a restart): the guests stay, paused on their NBD disks until it is back.
    mutating func stopDaemon() {
        up = false
        for vm in vms.indices {
            if vms[vm].domain.isActive { vms[vm].domain = .paused }
            vms[vm].pendingWrite = nil
        }
    }

    /// `ClusterNode.datagram` for a heartbeat (authenticated, replay-checked by the decoder).
    /// `timestamp` and the echo are nanoseconds of the sender's clock.
    mutating func receiveHeartbeat(
        network: Int, incarnation peer: UInt64, timestamp: Int64, echo: (UInt64, Int64)?, vms summaries: [Heartbeat.VMSummary],
        restartGrace: Int64?, at time: Int64
    ) {
        guard peer >= peerIncarnation else { return }  // an older incarnation's late datagram
        if peer > peerIncarnation { highestHeard = [nil, nil] }
        if let highest = highestHeard[network], timestamp <= highest { return }  // a reordered one
        highestHeard[network] = timestamp
        peerIncarnation = peer
        wake = true
        let now = clock(time)
        let echoed: MonotonicInstant? = echo.flatMap { $0.0 == incarnation ? MonotonicInstant(nanoseconds: $0.1) : nil }
        peerHeardUs = echoed != nil
        liveness.received(on: network, at: now, echoedTimestamp: echoed)
        if let grace = restartGrace {
            liveness.peerRestarting(at: now, grace: .milliseconds(grace))
            restartingIncarnation = peer
        } else if let restarting = restartingIncarnation, restarting != peer {
            liveness.peerRestarted()
            restartingIncarnation = nil
        }
        heardFromPeer = (peer, timestamp)
        for summary in summaries { peerSummaries[summary.name] = summary }
    }
}

struct Witness {
    var lease: WitnessLease
    var up = true
    /// Persisted: a restarted witness never reuses a term.
    var highestTerm: UInt64 = 0
    /// Persisted with the term (`vmha witness --state-file`).
    var unsyncedWriter: String?
}

/// Which links are cut: a counter per link, so that overlapping faults heal independently.
struct Network {
    var heartbeatCuts = [0, 0]
    var replicationCuts = 0
    var witnessCuts = [0, 0]
    /// Datagrams from host i to its peer are lost (both heartbeat networks); TCP stalls.
    var oneWayCuts = [0, 0]
    /// While positive, datagrams between the hosts take up to `slowDelayMS` (reordered).
    var slow = 0

    var heartbeatUp: [Bool] { heartbeatCuts.map { $0 == 0 } }
    var replicationUp: Bool { replicationCuts == 0 && oneWayCuts == [0, 0] }
    var witnessReachable: [Bool] { witnessCuts.map { $0 == 0 } }
}

/// A property every schedule must keep.
public enum Invariant: String, Sendable, Codable, CaseIterable {
    /// No VM's guest runs unpaused on a primary volume on both hosts, and no two hosts both
    /// acknowledge writes the other lacks (docs/witness.md).
    case neverTwoPrimaries = "never-two-primaries"
    /// A guest starts only on a replica that holds every write any guest had acknowledged.
    case noAcknowledgedWriteLost = "no-acknowledged-write-lost"
    /// Module statuses are valid combinations and a module's volumes match its state.
    case validStates = "valid-states"
    /// Once every fault healed, each VM runs on exactly one host with an UpToDate, identical peer.
    case converges
}

public struct Violation: Sendable, Codable, Equatable, CustomStringConvertible {
    public var invariant: Invariant
    /// Simulated milliseconds since the schedule started.
    public var at: Int64
    public var detail: String

    public var description: String { "\(invariant.rawValue) at \(Double(at) / 1000) s: \(detail)" }
}
