/// The control API between `vmha` and `vmhad`: one JSON object per line on a root-only UNIX
/// socket (`<state_directory>/control.sock`, mode 0600), one request and one response per line.
public struct ControlRequest: Codable, Sendable {
    /// `status`, `migrate`, `resync`, `place`, `add`, `remove`.
    public var command: String
    public var vm: String?
    public var to: String?
    public var force: Bool?
    /// migrate: libvirt live migration instead of a switchover with a guest reboot.
    public var live: Bool?
    public var full: Bool?
    /// resync: `incremental` (default), `full`, `checksum` or `verify`.
    public var mode: String?
    /// resync: a new maximum rate for the VM's resyncs, bytes per second, the running one at once
    /// (0: none); alone (no `mode`), it starts no resync.
    public var rate: UInt64?
    public var dryRun: Bool?
    /// place: the VMs that may move (nil: all).
    public var vms: [String]?
    /// place: the host the named VMs must run on.
    public var on: String?
    /// add: the new `[[vms]]` entry, TOML (`ConfigurationEditor.adding`).
    public var vmTOML: String?
    /// remove: shut the VM down first if it runs on this host.
    public var stop: Bool?
    /// events: only those after this sequence number.
    public var since: UInt64?
    /// events: first the current state, as `exists` events (like `drbdsetup events2 --now`).
    public var now: Bool?
    /// events: with nothing new after `since`, answer when there is, or after this many seconds.
    public var waitSeconds: Double?

    public init(
        command: String, vm: String? = nil, to: String? = nil, force: Bool? = nil, live: Bool? = nil, full: Bool? = nil, mode: String? = nil,
        dryRun: Bool? = nil, vms: [String]? = nil, on: String? = nil, vmTOML: String? = nil, stop: Bool? = nil,
        since: UInt64? = nil, now: Bool? = nil, waitSeconds: Double? = nil
    ) {
        self.since = since
        self.now = now
        self.waitSeconds = waitSeconds
        self.vmTOML = vmTOML
        self.stop = stop
        self.vms = vms
        self.on = on
        self.mode = mode
        self.command = command
        self.vm = vm
        self.to = to
        self.force = force
        self.live = live
        self.full = full
        self.dryRun = dryRun
    }
}

public struct ControlResponse: Codable, Sendable {
    public var ok: Bool
    public var error: String?
    public var message: String?
    public var status: ClusterStatusReport?
    public var place: PlaceReport?
    public var events: EventsReport?

    public init(
        ok: Bool, error: String? = nil, message: String? = nil, status: ClusterStatusReport? = nil, place: PlaceReport? = nil,
        events: EventsReport? = nil
    ) {
        self.events = events
        self.ok = ok
        self.error = error
        self.message = message
        self.status = status
        self.place = place
    }
}

/// `events`: the node's events after the asked sequence.
public struct EventsReport: Codable, Sendable {
    public var host: String
    public var incarnation: UInt64
    /// The newest sequence number (ask `since` it next time).
    public var lastSequence: UInt64
    /// Some events after `since` were already dropped (the log keeps the newest).
    public var missed: Bool
    public var events: [NodeEvent]

    public init(host: String, incarnation: UInt64, lastSequence: UInt64, missed: Bool, events: [NodeEvent]) {
        self.host = host
        self.incarnation = incarnation
        self.lastSequence = lastSequence
        self.missed = missed
        self.events = events
    }
}

public struct ClusterStatusReport: Codable, Sendable {
    public var host: String
    public var peer: String
    /// `unknown`, `alive`, `lost`.
    public var peerState: String
    /// Per heartbeat network: `up` or `silent`.
    public var networks: [String]
    public var witness: String?
    public var lease: String
    public var fenced: Bool
    public var vms: [VMStatusReport]
    public var events: [String]
    /// The node's event sequence this report was read at (`vmha events --since` it for what follows).
    public var eventSequence: UInt64?
    /// This host's `[[hosts.checks]]` (nil: none configured).
    public var hostChecks: [CheckReport]?
    /// The peer's failed host checks, from its heartbeats (nil: none).
    public var peerFailingHostChecks: [String]?

    public init(
        host: String, peer: String, peerState: String, networks: [String], witness: String?, lease: String, fenced: Bool, vms: [VMStatusReport],
        events: [String], eventSequence: UInt64? = nil
    ) {
        self.eventSequence = eventSequence
        self.host = host
        self.peer = peer
        self.peerState = peerState
        self.networks = networks
        self.witness = witness
        self.lease = lease
        self.fenced = fenced
        self.vms = vms
        self.events = events
    }
}

public struct VMStatusReport: Codable, Sendable {
    public var name: String
    public var state: String
    public var replica: String
    public var peerState: String?
    public var peerReplica: String?
    /// The host running the VM, as far as this host knows.
    public var runsOn: String?
    public var domain: String?
    public var lastError: String?
    public var notStarted: String?
    public var volumes: [VolumeReport]
    /// The VM's checks as this host judges them (only where it runs: elsewhere they do not run).
    public var checks: [CheckReport]?

    public init(name: String, state: String, replica: String, peerState: String?, peerReplica: String?, runsOn: String?, domain: String?, lastError: String?, notStarted: String?, volumes: [VolumeReport]) {
        self.name = name
        self.state = state
        self.replica = replica
        self.peerState = peerState
        self.peerReplica = peerReplica
        self.runsOn = runsOn
        self.domain = domain
        self.lastError = lastError
        self.notStarted = notStarted
        self.volumes = volumes
    }
}

/// One `[[vms.checks]]` entry's state (``CheckMachine``) and its last result.
public struct CheckReport: Codable, Sendable, Equatable {
    public var name: String
    public var health: String
    public var consecutiveFailures: Int
    public var lastResult: String?

    public init(name: String, health: String, consecutiveFailures: Int, lastResult: String?) {
        self.name = name
        self.health = health
        self.consecutiveFailures = consecutiveFailures
        self.lastResult = lastResult
    }
}

public struct VolumeReport: Codable, Sendable {
    public var name: String
    public var role: String
    public var link: String
    public var dirtyBytes: UInt64
    public var resyncTotalBytes: UInt64
    public var resyncDoneBytes: UInt64
    public var resyncSeconds: Double
    public var resyncsCompleted: Int
    public var lastError: String?
    /// What the last split brain settled by policy discarded (`ReplicationStatus.splitBrainResolved`).
    public var splitBrainResolved: String?
    /// The running resync's rate and time left, from its last progress event (nil until known).
    public var resyncBytesPerSecond: Double?
    public var resyncETASeconds: Double?
    /// The image and metadata files here, and the current data generation (hex).
    public var image: String?
    public var metadata: String?
    public var generation: String?
    /// Guest writes completed here since vmhad opened the volume, and their summed completion
    /// time in seconds (mean latency over an interval: the difference of two reads).
    public var guestWrites: UInt64?
    public var guestWriteSeconds: Double?

    public init(name: String, role: String, link: String, dirtyBytes: UInt64, resyncTotalBytes: UInt64, resyncDoneBytes: UInt64, resyncSeconds: Double, resyncsCompleted: Int, lastError: String?, splitBrainResolved: String? = nil, resyncBytesPerSecond: Double? = nil, resyncETASeconds: Double? = nil) {
        self.resyncBytesPerSecond = resyncBytesPerSecond
        self.resyncETASeconds = resyncETASeconds
        self.name = name
        self.role = role
        self.link = link
        self.dirtyBytes = dirtyBytes
        self.resyncTotalBytes = resyncTotalBytes
        self.resyncDoneBytes = resyncDoneBytes
        self.resyncSeconds = resyncSeconds
        self.resyncsCompleted = resyncsCompleted
        self.lastError = lastError
        self.splitBrainResolved = splitBrainResolved
    }
}

public struct PlaceReport: Codable, Sendable {
    /// Each host's capacity as the plan used it, and where it came from (`config`, `libvirt`,
    /// `peer heartbeat`, `assumed like this host`).
    public struct HostCapacity: Codable, Sendable, Equatable {
        public var name: String
        public var vcpus: Int
        public var memoryMiB: Int
        public var source: String

        public init(name: String, vcpus: Int, memoryMiB: Int, source: String) {
            self.name = name
            self.vcpus = vcpus
            self.memoryMiB = memoryMiB
            self.source = source
        }
    }

    public var hosts: [HostCapacity]
    public var moves: [String]
    public var unplaced: [String]
    public var scoreBefore: Double
    public var scoreAfter: Double
    public var applied: [String]

    public init(hosts: [HostCapacity], moves: [String], unplaced: [String], scoreBefore: Double, scoreAfter: Double, applied: [String]) {
        self.hosts = hosts
        self.moves = moves
        self.unplaced = unplaced
        self.scoreBefore = scoreBefore
        self.scoreAfter = scoreAfter
        self.applied = applied
    }
}
