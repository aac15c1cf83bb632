/// What to do with a VM whose check failed (``CheckAction/recover(_:)``; issue 15): restart it
/// where it runs up to `restarts` times within `window`; then move it to the peer if the peer can
/// take it; else leave it and say why. A VM a checker moved is held where it landed for
/// `holdDown`: no checker moves it again and automatic failback leaves it alone, so two hosts
/// never play ping-pong with it. Pure: the caller keeps the ``RecoveryRecord`` and the clock.
public enum RecoveryPolicy {
    public static func decide(
        _ record: RecoveryRecord, at now: MonotonicInstant, limits: RecoveryLimits, peer: PeerReadiness
    ) -> (record: RecoveryRecord, decision: RecoveryDecision) {
        var next = record
        next.restarts.removeAll { $0 + limits.window <= now }
        if next.restarts.count < limits.restarts {
            next.restarts.append(now)
            return (next, .restartHere(attempt: next.restarts.count, of: limits.restarts))
        }
        let spent = "restarted \(next.restarts.count) times within \(limits.window)"
        if let moved = next.lastCheckerMove, now < moved + limits.holdDown {
            return (next, .giveUp("\(spent); moved by a checker \(now - moved) ago, held for \(limits.holdDown)"))
        }
        guard peer.alive else { return (next, .giveUp("\(spent); the peer is lost")) }
        guard peer.replicaUpToDate else { return (next, .giveUp("\(spent); the peer's replica is not UpToDate")) }
        if let failing = peer.failingChecks.first {
            return (next, .giveUp("\(spent); the peer's check \(failing) fails too"))
        }
        next.lastCheckerMove = now
        next.restarts = []
        return (next, .moveToPeer)
    }

    /// Whether automatic failback (or any checker) must leave the VM where a checker put it.
    public static func isHeld(_ record: RecoveryRecord, at now: MonotonicInstant, limits: RecoveryLimits) -> Bool {
        guard let moved = record.lastCheckerMove else { return false }
        return now < moved + limits.holdDown
    }
}

/// `[vms.recovery]` (docs/config.md), with its defaults.
public struct RecoveryLimits: Sendable, Equatable {
    public var restarts: Int
    public var window: Duration
    public var holdDown: Duration

    public init(restarts: Int = 3, window: Duration = .seconds(600), holdDown: Duration = .seconds(1800)) {
        self.restarts = restarts
        self.window = window
        self.holdDown = holdDown
    }
}

/// One VM's recovery history on the host that runs it. A move hands `lastCheckerMove` to the
/// host it moves to (the hold-down holds there).
public struct RecoveryRecord: Sendable, Equatable {
    public var restarts: [MonotonicInstant]
    public var lastCheckerMove: MonotonicInstant?

    public init(restarts: [MonotonicInstant] = [], lastCheckerMove: MonotonicInstant? = nil) {
        self.restarts = restarts
        self.lastCheckerMove = lastCheckerMove
    }
}

/// What the peer says of itself for this VM (its heartbeat): can it take the VM over?
public struct PeerReadiness: Sendable, Equatable {
    public var alive: Bool
    public var replicaUpToDate: Bool
    /// The peer's own checks this VM depends on (its host checks) that fail there.
    public var failingChecks: [String]

    public init(alive: Bool, replicaUpToDate: Bool, failingChecks: [String] = []) {
        self.alive = alive
        self.replicaUpToDate = replicaUpToDate
        self.failingChecks = failingChecks
    }
}

public enum RecoveryDecision: Sendable, Equatable {
    case restartHere(attempt: Int, of: Int)
    /// A switchover to the peer (the VM's checks start over there).
    case moveToPeer
    /// Nothing more is tried; the reason is reported (event, status, console).
    case giveUp(String)
}

/// What a failed host check leads to (`[[hosts.checks]]`, issue 15): while one has failed on this
/// host and none fails on the peer, each VM running here moves to the peer (a switchover), highest
/// priority first — if the peer is alive, its replica of the VM UpToDate and the VM not held by an
/// earlier checker move. Level-triggered: asked again at every host check result, so a VM that
/// could not move yet (its replica resyncing) moves once it can. When the same trouble is on both
/// hosts nothing moves: the VMs are no better off there. Pure; the node carries out the moves.
public enum Evacuation {
    public struct VM: Sendable, Equatable {
        public var name: String
        public var priority: Int
        public var runsHere: Bool
        public var peerReplicaUpToDate: Bool
        /// ``RecoveryPolicy/isHeld(_:at:limits:)``: a checker moved it here within its hold-down.
        public var held: Bool

        public init(name: String, priority: Int = 0, runsHere: Bool, peerReplicaUpToDate: Bool, held: Bool = false) {
            self.name = name
            self.priority = priority
            self.runsHere = runsHere
            self.peerReplicaUpToDate = peerReplicaUpToDate
            self.held = held
        }
    }

    public enum Decision: Sendable, Equatable {
        case move(vm: String)
        /// It stays here, and why (reported once per reason).
        case stay(vm: String, reason: String)
    }

    public static func plan(failingHere: [String], peerAlive: Bool, failingOnPeer: [String], vms: [VM]) -> [Decision] {
        guard let failing = failingHere.first else { return [] }
        let running = vms.filter(\.runsHere).sorted { $0.priority > $1.priority }
        return running.map { vm in
            let why = "host check \(failing) failed here"
            if !peerAlive { return .stay(vm: vm.name, reason: "\(why); the peer is lost") }
            if let theirs = failingOnPeer.first { return .stay(vm: vm.name, reason: "\(why); the peer's host check \(theirs) fails too") }
            if vm.held { return .stay(vm: vm.name, reason: "\(why); held here by an earlier checker move (hold-down)") }
            if !vm.peerReplicaUpToDate { return .stay(vm: vm.name, reason: "\(why); the peer's replica is not UpToDate") }
            return .move(vm: vm.name)
        }
    }
}
