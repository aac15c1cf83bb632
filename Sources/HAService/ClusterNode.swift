import Cluster
import Crypto
import Foundation
import Libvirt
import Locking
import Logging
import Metrics
import Replication
import ReplicationPolicy
import Sockets
import SystemCalls
import SystemPackage
import Uring
import Volume

#if canImport(Glibc)
import Glibc
#endif

/// This host's reading of CLOCK_MONOTONIC.
func monotonicNow() -> MonotonicInstant { MonotonicInstant(nanoseconds: MonotonicClock.nanoseconds()) }

/// One VM's module on this host: the state machine's status plus what runs for it.
final class VMModule {
    let config: VMConfiguration
    let domainXML: DomainXML
    /// Volume name (= NBD export name, = name on the replication link) per configured disk.
    let volumeNames: [String]
    var status = ModuleStatus(.stop, .unknown)
    var volumes: [LocalVolume] = []
    enum Role { case closed, primary, secondary }
    var role: Role = .closed
    var primaryTask: Task<Void, Never>?
    var replications: [PrimaryReplication] = []
    var lastError: String?
    var notStartedReason: String?
    var lastPeer: Heartbeat.VMSummary?
    /// The volumes' data generations as the last control step read them (sent in heartbeats;
    /// empty while the volumes are closed).
    var generations: [GenerationSummary] = []
    /// Set when this host started the VM in a failover; only such a VM fails back by itself.
    var arrivedByFailover = false
    /// This host handed the VM over and has not yet seen the peer run it (`HostDecision.resendPromote`).
    var handedOver = false
    /// The highest hand-over number this host sent or accepted (`HostPolicy.acceptsPromote`).
    var handover = 0
    var lastPromoteSent: MonotonicInstant?
    var promotesSent = 0
    /// Per `config.checks` entry.
    var checks: [CheckRun]
    /// What failed checks led to (``RecoveryPolicy``); `lastCheckerMove` also when the peer's
    /// checker moved the VM here.
    var recovery = RecoveryRecord()
    /// Counts domain starts here: a probe's result that began before the last start is dropped.
    var domainStarts = 0
    /// When the domain was restarted after crashes (the last ten minutes).
    var crashRestarts: [ContinuousClock.Instant] = []
    /// When a domain start that failed is tried again (`ClusterNode.startRetryDelay`).
    var startRetryAt: MonotonicInstant?
    /// `vmha_vm_failovers_total`, `vmha_vm_restarts_total` (made with the module, so they read 0
    /// until the first).
    var failovers: Counter?
    var restarts: Counter?
    /// While vmhad itself shuts the domain down (switchover), its shutdown event is expected.
    var stoppingDomain = false
    /// Target of a live migration: the exports of this secondary's volumes the incoming domain
    /// uses, guest changes held (ClusterNode+LiveMigration.swift).
    var incomingExports: Task<Void, Never>?
    /// Source of a live migration: the target's answer to `prepareLive`.
    var liveReply: PeerCommand?

    /// The flags' rule once the module reached its status.
    func settleFlags() {
        HostSnapshot.VM.settleFlags(for: status.state, arrivedByFailover: &arrivedByFailover, notStartedReason: &notStartedReason, handedOver: &handedOver)
    }

    init(config: VMConfiguration, domainXML: DomainXML) {
        checks = config.checks.map { _ in CheckRun() }
        self.config = config
        self.domainXML = domainXML
        volumeNames = config.disks.indices.map { "\(config.name)-disk\($0)" }
    }

    var resources: Resources {
        Resources(vcpus: domainXML.vcpus, memoryMiB: Int(domainXML.memoryBytes >> 20))
    }
}

/// The HA service of one host: heartbeats, witness lease, per-VM module state machines and the
/// actions they ask for (volumes, replication, libvirt domains).
public actor ClusterNode {
    /// Changes only through `vmha add`/`vmha remove`, which rewrite `configPath` first.
    var config: ClusterConfiguration
    let configPath: String
    let me: HostConfiguration
    let peer: HostConfiguration
    let key: [UInt8]
    nonisolated let ring: IOUring
    let logger: Logger
    let replicationOptions: ReplicationOptions
    let socketGroup: gid_t?
    nonisolated let incarnation: UInt64
    let startedAt: MonotonicInstant
    var libvirt: LibvirtConnection?

    var modules: [String: VMModule] = [:]
    var order: [String] = []

    // Heartbeats and liveness.
    var decoder: HeartbeatDecoder
    var liveness: PeerLiveness
    var sequence: UInt64 = 0
    /// Per `[[hosts.checks]]` entry of this host (ClusterNode+Checks.swift).
    var hostChecks: [CheckRun] = []
    /// The peer's failed host checks, from its latest heartbeat.
    var peerFailingHostChecks: [String] = []
    /// Per VM, why a host check's evacuation left it here (reported when it changes).
    var evacuationNotes: [String: String] = [:]
    /// The last rejected heartbeat's reason per network, and when it was logged (`rejectedHeartbeat`).
    var heartbeatRejections: [Int: (reason: String, at: MonotonicInstant)] = [:]
    var heardFromPeer: (incarnation: UInt64, timestamp: MonotonicInstant)?
    /// The peer's latest heartbeat echoed this incarnation (`HostSnapshot.peerHeardUs`).
    var peerHeardUs = false
    /// The peer incarnation that announced a graceful restart, until its successor is heard.
    var restartingIncarnation: UInt64?
    var peerState: PeerState = .unknown
    var peerSummaries: [String: Heartbeat.VMSummary] = [:]
    /// What this host offers to VMs (libvirt node info, overridden by `capacity` in its config entry).
    var localCapacity = Resources.zero
    /// What the peer says it offers, from its heartbeats.
    var peerCapacity: Resources?
    var heartbeatSockets: [UDPSocket] = []
    /// One task per UDP socket (heartbeat networks, witness), on the ring.
    var receivers: [Task<Void, Never>] = []
    /// Peer commands: the last sequence sent (in this incarnation) and which were received.
    var commandSequence: UInt64 = 0
    var commandWindow = PeerCommandReplayWindow()

    // Witness lease.
    var lease: LeaseClient
    var witnessSocket: UDPSocket?
    var witnessAddress: TCPSocket.Address?
    var lastLeaseOutcome = "none"
    var hadLease = false
    var fenced = false
    /// What primaries do with writes their peer misses (`HostPolicy`, `setWritePolicy`).
    var writePolicy = UnreplicatedWritePolicy.complete

    /// Serves every secondary volume of this host to the peer, for the daemon's whole life:
    /// role changes add and remove volumes without touching the other volumes' links.
    let replicaServer: ReplicaServer
    var replicaServerTask: Task<Void, Never>?

    /// The control loop's queue: commands (operator's, peer's) and crash restarts, run by the
    /// loop one at a time, in arrival order, between policy steps.
    var inbox: [LoopJob] = []
    /// Counts `stateChanged()` calls: the loop steps again at once if one came during a step.
    var changes: UInt64 = 0
    /// Policy steps taken (how often the loop worked; `NodeEventTests` reads it).
    var controlSteps: UInt64 = 0
    var failoverLog: [String] = []
    /// Callers waiting for the node's state to change (`nextChange`), each with its deadline timer.
    var changeWaiters: [UInt64: (continuation: CheckedContinuation<Void, Never>, timer: Task<Void, Never>)] = [:]
    var nextWaiterID: UInt64 = 0
    /// Every state change, numbered (`vmha events`), and its copy on disk.
    var eventLog: NodeEventLog
    var history: EventHistory
    /// Link and resync status changes of every volume, in the order they happened: the
    /// replication tasks yield them, `statusLoop` makes them events.
    let linkChanges: AsyncStream<(volume: String, status: ReplicationStatus)>
    let linkChangesInput: AsyncStream<(volume: String, status: ReplicationStatus)>.Continuation
    /// The last status seen per volume (events are published on change).
    var linkSeen: [String: ReplicationStatus] = [:]
    /// Per volume this host resyncs: the last progress sample (`resyncProgress` events).
    var resyncSamples: [String: (at: MonotonicInstant, done: UInt64)] = [:]
    var nextResyncProgress: MonotonicInstant?
    /// The rate of each running resync at its last progress event (`vmha_volume_resync_bytes_per_second`).
    var resyncRates: [String: Double] = [:]
    static let resyncProgressInterval = Duration.seconds(2)
    /// Per heartbeat network: whether the peer's heartbeats arrive (`network` events).
    var networksUp: [Bool]
    var stopping = false

    public init(
        config: ClusterConfiguration, configPath: String, hostName: String, key: [UInt8], ring: IOUring, socketGroup: gid_t?,
        logger: Logger
    ) throws {
        self.config = config
        self.configPath = configPath
        self.me = config.host(named: hostName)!
        hostChecks = me.checks.map { _ in CheckRun() }
        self.peer = config.peer(of: hostName)!
        self.key = key
        self.ring = ring
        self.logger = logger
        self.socketGroup = socketGroup
        var options = ReplicationOptions(
            handshake: .init(hostName: hostName, clusterName: config.clusterName, clusterKey: SymmetricKey(data: key)))
        options.timing.timeout = config.timeouts.detection * 2 / 3
        options.timing.keepaliveInterval = config.timeouts.heartbeatInterval
        options.splitBrainPolicy = config.splitBrainPolicy
        options.resyncMaxRate = config.resync.maxRate
        options.resyncMinRate = config.resync.minRate
        options.resyncLatencyTarget = config.resync.latencyTarget
        self.replicationOptions = options
        let (linkChanges, linkChangesInput) = AsyncStream<(volume: String, status: ReplicationStatus)>.makeStream()
        self.linkChanges = linkChanges
        self.linkChangesInput = linkChangesInput
        replicaServer = ReplicaServer(
            listen: TCPSocket.Address("0.0.0.0:\(me.replicationAddress.port)")!, ring: ring, options: options, logger: logger,
            onLinkChange: { linkChangesInput.yield(($0, $1)) })
        // Incarnation: strictly increasing across restarts, persisted in the state directory.
        let path = "\(config.stateDirectory)/incarnation"
        let previous = (try? String(contentsOfFile: path, encoding: .utf8)).flatMap { UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
        let wall = UInt64(Date().timeIntervalSince1970 * 1000)
        incarnation = max(previous + 1, wall)
        try "\(incarnation)\n".write(toFile: path, atomically: true, encoding: .utf8)
        startedAt = monotonicNow()
        let historyPath = "\(config.stateDirectory)/events.jsonl"
        let (restored, unreadable) = EventHistory.load(path: historyPath)
        eventLog = NodeEventLog(incarnation: incarnation, restoring: restored)
        history = EventHistory(path: historyPath, logger: logger)
        networksUp = Array(repeating: false, count: me.heartbeatAddresses.count)
        if unreadable > 0 {
            logger.warning("event history: skipped lines that are not events", metadata: ["file": "\(historyPath)", "lines": "\(unreadable)"])
        }
        decoder = HeartbeatDecoder(key: SymmetricKey(data: key), clusterName: config.clusterName, localHost: hostName)
        let timing = config.timeouts.leaseTiming
        liveness = PeerLiveness(
            networks: me.heartbeatAddresses.count, detectionTimeout: config.timeouts.detection,
            fenceTimeout: timing.fenceTimeout(detection: config.timeouts.detection), startedAt: startedAt)
        lease = LeaseClient(host: hostName, timing: timing, firstRequestID: incarnation << 20)
    }

    // MARK: - Start and stop

    func start() async throws {
        try FileManager.default.createDirectory(atPath: config.nbd.socketDirectory, withIntermediateDirectories: true)
        let connecting = ContinuousClock.now
        libvirt = try await LibvirtConnection.open(uri: me.libvirtURI, logger: logger)
        if let info = try? await libvirt?.nodeInfo() {
            localCapacity = Resources(vcpus: info.cpus, memoryMiB: Int(info.memoryBytes >> 20))
        }
        logger.info("libvirt connected", metadata: ["uri": "\(me.libvirtURI)", "seconds": "\(connecting.duration(to: .now))"])
        replicaServer.answerSupportRequests { [weak self] since in await self?.supportPart(sinceSeconds: since) ?? [] }
        try await openModules()
        try openHeartbeatSockets()
        if let witness = config.witness {
            witnessAddress = TCPSocket.Address("\(witness.address.host):\(witness.address.port)")
            let socket = try UDPSocket(bind: TCPSocket.Address("0.0.0.0:0")!)
            witnessSocket = socket
            startReceiver(socket: socket, network: -1)
        }
        logger.info("cluster node started", metadata: ["host": "\(me.name)", "peer": "\(peer.name)", "incarnation": "\(incarnation)", "vms": "\(order.count)"])
    }

    /// The replica listener and every configured VM's module: each starts in WAIT with its
    /// volumes open as secondaries (served to the peer, if it is primary); the peer's heartbeats
    /// or the witness decide who runs what. Needs no libvirt (tests drive a node from here).
    func openModules() async throws {
        if let v = me.capacity.vcpus { localCapacity.vcpus = v }
        if let m = me.capacity.memoryMiB { localCapacity.memoryMiB = m }
        // The listener first: a port taken by someone else is a clear error at start.
        let listener: FileDescriptor
        do {
            listener = try TCPSocket.listen(replicaServer.listenAddress)
        } catch {
            throw VMHAClusterError("replication listener on \(replicaServer.listenAddress): \(error)")
        }
        let server = replicaServer
        replicaServerTask = Task(executorPreference: ring) { await server.run(listener: listener) }
        for vm in config.vms { try await addModule(vm) }
    }

    /// One UDP socket per heartbeat network, each read on the ring (tests open them without libvirt).
    func openHeartbeatSockets() throws {
        for (index, address) in me.heartbeatAddresses.enumerated() {
            let socket = try UDPSocket(bind: TCPSocket.Address("\(address.host):\(address.port)") ?? TCPSocket.Address("0.0.0.0:\(address.port)")!)
            heartbeatSockets.append(socket)
            startReceiver(socket: socket, network: index)
        }
    }

    /// Graceful shutdown: running domains stay as they are (their NBD disks pause them until the
    /// next vmhad serves them again); volumes are closed cleanly.
    func stop() async {
        stopping = true
        if config.timeouts.restartGrace > .zero {
            // Tell the peer not to take our VMs over while we are away: our guests cannot write
            // without us (their disks are our NBD exports), so waiting costs only time.
            for _ in 0..<3 {
                sendHeartbeats(restartGrace: config.timeouts.restartGrace)
                // Timer: three grace heartbeats 20 ms apart, so that one lost datagram does not matter.
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
        for name in order {
            let module = modules[name]!
            await closeVolumes(module)
        }
        replicaServerTask?.cancel()
        await replicaServerTask?.value
        for receiver in receivers { receiver.cancel() }
        for receiver in receivers { await receiver.value }
        receivers = []
        for socket in heartbeatSockets { socket.close() }
        witnessSocket?.close()
        linkChangesInput.finish()
        history.close()
        await libvirt?.close()
    }

    /// Receives the socket's datagrams on the ring (no thread of its own), in arrival order,
    /// until cancelled (`stop`). Network -1 is the witness socket.
    func startReceiver(socket: UDPSocket, network: Int) {
        let ring = self.ring
        receivers.append(
            Task(executorPreference: ring) { [weak self] in
                // Larger than any heartbeat of `limits.max_vms` VMs; a longer datagram is cut and
                // then fails authentication.
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 16)
                defer { buffer.deallocate() }
                while !Task.isCancelled {
                    let count: Int
                    do {
                        count = try await ring.recv(.file(socket.descriptor), into: buffer)
                    } catch .canceled {
                        return
                    } catch {
                        // ECONNREFUSED from an ICMP error of an earlier send, and the like.
                        continue
                    }
                    guard let node = self else { return }
                    let bytes = Array(buffer[0..<count]), now = monotonicNow()
                    // Off the ring: a default actor runs on its caller's preferred executor, and
                    // the node's work (libvirt, sleeps, waits on volumes) must never hold the
                    // thread that serves every guest's I/O (it stalled guests when it did).
                    await withTaskExecutorPreference(globalConcurrentExecutor) {
                        await node.datagram(bytes, network: network, at: now)
                    }
                }
            })
    }

    // MARK: - Datagrams

    /// Handles one datagram. A peer command is queued for the control loop, in arrival order (a
    /// switchover takes seconds, and the receiver must keep reading heartbeats meanwhile).
    func datagram(_ bytes: [UInt8], network: Int, at now: MonotonicInstant) {
        if network < 0 {
            guard case .response(let response)? = WitnessWire.decode(bytes, key: key) else { return }
            let outcome = lease.receive(response, at: now)
            switch outcome {
            case .granted(let term, let validUntil, let peerOutdated):
                if !hadLease {
                    logger.notice("witness vote granted", metadata: ["term": "\(term)", "peer outdated": "\(peerOutdated)"])
                    publish(.lease(outcome: "granted (term \(term))"))
                }
                hadLease = true
                lastLeaseOutcome = "granted (term \(term), \(validUntil - now) left\(peerOutdated ? ", \(peer.name) held outdated" : ""))"
            case .denied(let holder, let retry):
                lastLeaseOutcome = "denied (holder \(holder ?? "none"), retry after \(retry))"
            case .outdated(let writer):
                let outcome = "denied: \(writer) may have written without us, so our copies are outdated until it resyncs them"
                if lastLeaseOutcome != outcome {
                    logger.warning("witness vote denied", metadata: ["reason": "\(outcome)"])
                    publish(.lease(outcome: outcome))
                }
                lastLeaseOutcome = outcome
            case .ignored: break
            }
            stateChanged()
            return
        }
        if bytes.starts(with: PeerCommand.magic) {
            if let command = admittedCommand(bytes, network: network) { peerCommand(command) }
            return
        }
        let heartbeat: Heartbeat
        do {
            heartbeat = try decoder.decode(bytes, receivedOn: network)
        } catch {
            rejectedHeartbeat(error, bytes: bytes.count, network: network, at: now)
            return
        }
        guard heartbeat.sender == peer.name else { return }
        commandWindow.peerAnnounced(incarnation: heartbeat.incarnation)
        var echo: MonotonicInstant?
        if let e = heartbeat.echo, e.incarnation == incarnation { echo = e.timestamp }
        peerHeardUs = echo != nil
        liveness.received(on: network, at: now, echoedTimestamp: echo)
        if let grace = heartbeat.restartGrace {
            if restartingIncarnation != heartbeat.incarnation { logger.notice("peer \(peer.name) is restarting its vmhad; waiting up to \(grace) before calling it lost") }
            liveness.peerRestarting(at: now, grace: grace)
            restartingIncarnation = heartbeat.incarnation
        } else if let restarting = restartingIncarnation, restarting != heartbeat.incarnation {
            liveness.peerRestarted()
            restartingIncarnation = nil
        }
        heardFromPeer = (heartbeat.incarnation, heartbeat.timestamp)
        if let capacity = heartbeat.capacity { peerCapacity = capacity }
        if heartbeat.failingHostChecks != peerFailingHostChecks {
            record(heartbeat.failingHostChecks.isEmpty
                ? "\(peer.name): its host checks pass again"
                : "\(peer.name): host check \(heartbeat.failingHostChecks.joined(separator: ", ")) failed there")
            peerFailingHostChecks = heartbeat.failingHostChecks
        }
        for vm in heartbeat.vms { peerSummaries[vm.name] = vm }
        stateChanged()
    }

    /// A rejected heartbeat is never dropped silently (a wrong key, a truncating middlebox or a
    /// stranger would otherwise look like a dead peer): a warning per network when the reason
    /// changes, and at most one per 10 s while it stays the same. A copy that arrived out of
    /// order is only worth a debug line.
    func rejectedHeartbeat(_ error: HeartbeatError, bytes: Int, network: Int, at now: MonotonicInstant) {
        let metadata: Logger.Metadata = ["network": "\(network)", "bytes": "\(bytes)", "reason": "\(error)"]
        if case .replayedSequence = error {
            logger.debug("heartbeat dropped", metadata: metadata)
            return
        }
        let reason = "\(error)".prefix(while: { $0 != ":" })
        if let last = heartbeatRejections[network], last.reason == reason, now - last.at < .seconds(10) { return }
        heartbeatRejections[network] = (String(reason), now)
        logger.warning("heartbeat dropped", metadata: metadata)
    }

    /// A peer command is acted on once, and only when it is authentic, meant for this host and
    /// new (`PeerCommandReplayWindow`); anything else is logged with the reason and dropped.
    func admittedCommand(_ bytes: [UInt8], network: Int) -> PeerCommand? {
        let command: PeerCommand
        do {
            command = try PeerCommand.decode(bytes, key: key)
        } catch {
            // Garbage or a stranger on the heartbeat port: not worth more than debug each time.
            logger.debug("peer command dropped", metadata: ["network": "\(network)", "reason": "\(error)"])
            return nil
        }
        guard command.sender == peer.name, command.target == me.name else {
            logger.warning("peer command dropped", metadata: [
                "kind": "\(command.kind)", "reason": "from \(command.sender) to \(command.target), expected \(peer.name) to \(me.name)",
            ])
            return nil
        }
        let verdict = commandWindow.admit(incarnation: command.incarnation, sequence: command.sequence)
        guard verdict == .admitted else {
            // One copy per network is normal; anything else is worth a line.
            if verdict != .replayed || heartbeatSockets.count < 2 {
                logger.warning("peer command dropped", metadata: [
                    "kind": "\(command.kind)", "vm": "\(command.vm)", "incarnation": "\(command.incarnation)",
                    "sequence": "\(command.sequence)", "reason": "\(verdict)",
                ])
            }
            return nil
        }
        return command
    }

    /// Sends one heartbeat on every network and, while the vote is wanted, a lease request.
    func sendHeartbeats(restartGrace: Duration? = nil) {
        let now = monotonicNow()
        let summaries = order.map { name in
            let module = modules[name]!
            return Heartbeat.VMSummary(name: name, state: module.status.state, replica: module.status.replica, volumes: module.generations)
        }
        let first = sequence + 1
        for (index, socket) in heartbeatSockets.enumerated() {
            let datagrams: [[UInt8]]
            do {
                datagrams = try Heartbeat.parts(
                    clusterName: config.clusterName, sender: me.name, network: index, incarnation: incarnation, firstSequence: first,
                    timestamp: now, echo: heardFromPeer, vms: summaries, capacity: localCapacity, restartGrace: restartGrace,
                    failingHostChecks: failingHostCheckNames, key: SymmetricKey(data: key))
            } catch {
                // The configuration bounds every field, so this is a bug: say it, every time.
                logger.error("heartbeat not sent", metadata: ["network": "\(index)", "reason": "\(error)"])
                continue
            }
            // Every network's copy of part k carries the same sequence (each network has its own
            // replay counter at the receiver).
            sequence = max(sequence, first + UInt64(datagrams.count) - 1)
            let target = peer.heartbeatAddresses[index]
            guard let address = TCPSocket.Address("\(target.host):\(target.port)") else { continue }
            for bytes in datagrams { socket.send(bytes, to: address) }
        }
        sequence = max(sequence, first)
        let snapshot = policySnapshot(localReplicas: [:], at: now)
        if snapshot.wantsLease, let witnessSocket, let witnessAddress {
            let request = lease.makeRequest(at: now, peerInSync: snapshot.peerHasOurWrites)
            witnessSocket.send(WitnessWire.encode(.request(request), key: key), to: witnessAddress)
        }
    }

    // MARK: - The control loop

    func heartbeatLoop() async {
        while !Task.isCancelled && !stopping {
            sendHeartbeats()
            // Timer: the heartbeat interval is the clock of liveness and lease renewal.
            try? await Task.sleep(for: config.timeouts.heartbeatInterval)
        }
    }

    /// The host's one serialized loop: it runs the queued commands and steps the policy on
    /// every change (a datagram handled, a transition, a link change, a command) and at the
    /// instants the policy's clock-derived inputs change (`HostPolicy.nextLook`); nothing else
    /// wakes it. State changes only here, or in the handlers that feed it events.
    func controlLoop() async {
        while !Task.isCancelled && !stopping {
            if !inbox.isEmpty { await inbox.removeFirst().run() }
            let seen = changes
            let stepped = await step()
            guard changes == seen, inbox.isEmpty, !stopping else { continue }
            // Looked at from the step's instant: one that passed since is due at once.
            let look = nextLook(at: stepped) ?? stepped + config.timeouts.detection
            await nextChange(before: .now + (look - monotonicNow()))
        }
        let left = inbox
        inbox = []
        for job in left { job.cancel() }
    }

    /// Fencing does not wait for the loop: a job there (a live migration, a switchover's guest
    /// shutdown, a failover wave's boots) can hold it past the fence deadline while the peer
    /// nears its takeover (vmha-sim seed 13232). At each change and at the fence and vote
    /// deadlines, `HostPolicy.fenceNow` is applied at once.
    func fenceWatchdog() async {
        while !Task.isCancelled && !stopping {
            let now = monotonicNow()
            let live = liveness.status(at: now)
            var deadlines = [now + config.timeouts.detection]
            if !live.mustFence { deadlines.append(live.fenceDeadline) }
            if let end = lease.suspendDeadline, end > now { deadlines.append(end) }
            await nextChange(before: .now + (deadlines.min()! - now))
            if let vms = HostPolicy.fenceNow(policySnapshot(localReplicas: [:], at: monotonicNow())) { await carryOut(.fence(vms)) }
        }
    }

    /// See `HostPolicy.nextLook`; the node's own timers: a hand-over's promote resend, a failed
    /// start's retry, a network going silent, the next resync progress event.
    func nextLook(at now: MonotonicInstant) -> MonotonicInstant? {
        let resends = modules.values.compactMap { module in
            module.handedOver ? module.lastPromoteSent.map { HostPolicy.promoteDue(sent: module.promotesSent, last: $0) } : nil
        }
        let retries = fenced ? [] : modules.values.compactMap(\.startRetryAt)
        let live = liveness.status(at: now)
        // Not the policy's: when a network goes silent, and the next resync progress event.
        let silent = live.networks.compactMap { if case .up(let heard) = $0 { heard + config.timeouts.detection } else { nil } }
        let progress = nextResyncProgress.map { [$0] } ?? []
        return HostPolicy.nextLook(liveness: live, lease: lease, at: now, also: resends + retries + silent + progress)
    }

    /// Runs `body` in the control loop after what is queued, and returns its result; `otherwise`
    /// if the loop stops first.
    func inLoop<T: Sendable>(otherwise: T, _ body: @escaping (isolated ClusterNode) async -> T) async -> T {
        await withCheckedContinuation { continuation in
            enqueue(LoopJob(
                run: { continuation.resume(returning: await body(self)) },
                cancel: { continuation.resume(returning: otherwise) }))
        }
    }

    func enqueue(_ job: LoopJob) {
        inbox.append(job)
        stateChanged()
    }

    /// Runs what is queued, without the loop (tests drive a node step by step).
    func runQueuedJobs() async {
        while !inbox.isEmpty { await inbox.removeFirst().run() }
    }

    /// One pass of the control loop: the policy decides on a snapshot, the node carries out.
    /// Returns the snapshot's instant.
    @discardableResult
    func step() async -> MonotonicInstant {
        controlSteps += 1
        let now = monotonicNow()
        // A retry waits while fenced (the unfence is a step of its own).
        for name in order where !fenced {
            guard let module = modules[name], let at = module.startRetryAt, at <= now else { continue }
            module.startRetryAt = nil
            await restartCrashed(module, reason: "its start failed (\(module.lastError ?? "no reason given"))")
        }
        var replicas: [String: Cluster.ReplicaState] = [:]
        for name in order { replicas[name] = await readLocalReplica(modules[name]!) }
        let snapshot = policySnapshot(localReplicas: replicas, at: now)
        for decision in HostPolicy.decide(snapshot) { await carryOut(decision) }
        publishNetworkChanges(at: now)
        if let due = nextResyncProgress, due <= now { publishResyncProgress(at: now) }
        return now
    }

    /// What the policy decides on, read off this node now (`localReplicas` from the volumes).
    func policySnapshot(localReplicas: [String: Cluster.ReplicaState], at now: MonotonicInstant) -> HostSnapshot {
        let live = liveness.status(at: now)
        let vms = order.map { name -> HostSnapshot.VM in
            let module = modules[name]!
            let preferred = module.config.preferredHost ?? config.hosts[0].name
            return HostSnapshot.VM(
                name: name, status: module.status, localReplica: localReplicas[name] ?? module.status.replica,
                peerSummary: peerSummaries[name], lastPeer: module.lastPeer,
                peerData: SyncDecision.relation(
                    local: module.generations, peer: peerSummaries[name]?.volumes ?? [],
                    localWinsTies: preferred == me.name),
                preferredHost: preferred, failback: module.config.failback,
                arrivedByFailover: module.arrivedByFailover, notStartedReason: module.notStartedReason, handedOver: module.handedOver,
                priority: module.config.priority, resources: module.resources,
                held: RecoveryPolicy.isHeld(module.recovery, at: now, limits: module.config.recovery))
        }
        var snapshot = HostSnapshot(
            me: me.name, peer: peer.name, vms: vms, peerState: peerState, heardFromPeer: heardFromPeer != nil, peerHeardUs: peerHeardUs,
            peerAlive: live.peerAlive, mustFence: live.mustFence, mayRun: lease.mayRunPrimary(at: now), witnessHoldsPeerOutdated: lease.peerOutdated, hadLease: hadLease,
            fenced: fenced, witnessConfigured: config.witness != nil, writePolicy: writePolicy, localCapacity: localCapacity,
            maxConcurrentStarts: config.limits.concurrentStarts)
        snapshot.peerFailingHostChecks = peerFailingHostChecks
        return snapshot
    }

    func carryOut(_ decision: HostDecision) async {
        switch decision {
        case .peerUp(let back):
            logger.notice("peer \(peer.name) is \(back ? "back" : "up")")
            peerState = .alive
            publish(.peer(state: .alive))
            for module in modules.values { module.lastPeer = nil }
        case .peerLost:
            logger.warning("peer \(peer.name) lost: no heartbeat on any network for \(config.timeouts.detection)")
            peerState = .lost
            publish(.peer(state: .lost))
        case .acknowledgePeer(let vm, let summary):
            modules[vm]?.lastPeer = summary
        case .feed(let vm, let event):
            await feed(named: vm, event)
        case .setReplica(let vm, let replica):
            modules[vm]?.status.replica = replica
        case .setWritePolicy(let policy):
            writePolicy = policy
            logger.info("unreplicated writes: \(policy)")
            publish(.writePolicy("\(policy)"))
            for module in modules.values where module.role == .primary {
                for volume in module.volumes { await volume.setUnreplicatedWritePolicy(policy) }
            }
        case .leaseRanOut:
            hadLease = false
            logger.warning("witness lease ran out")
            publish(.lease(outcome: "ran out"))
        case .fence(let vms):
            fenced = true
            publish(.fence(on: true))
            logger.warning("fencing: the peer has not echoed our heartbeat and we hold no vote; pausing our domains")
            for name in vms { if let module = modules[name] { await suspendDomain(module) } }
        case .unfence(let vms):
            fenced = false
            publish(.fence(on: false))
            logger.notice("fence lifted; resuming domains")
            for name in vms { if let module = modules[name] { await resumeDomain(module) } }
        case .failover(let plan):
            await failover(plan)
        case .failBack(let vm):
            guard let module = modules[vm] else { return }
            module.arrivedByFailover = false
            record("failback: \(vm) returns to \(peer.name) (failback = automatic)")
            if let problem = await switchover(module) { record("failback of \(vm) failed: \(problem)") }
        case .resendPromote(let vm):
            guard let module = modules[vm] else { return }
            let now = monotonicNow()
            if let last = module.lastPromoteSent, now < HostPolicy.promoteDue(sent: module.promotesSent, last: last) { return }
            if module.promotesSent >= 5 { logger.notice("\(vm): \(peer.name) has not taken the VM we handed over; sending promote again") }
            module.lastPromoteSent = now
            module.promotesSent += 1
            sendPeerCommand(.promote, vm: vm, detail: PromoteDetail(handover: module.handover).encoded)
        case .handOverCompleted(let vm):
            modules[vm]?.handedOver = false
        case .record(let line):
            record(line)
        }
    }

    // MARK: - Failover

    /// Starts the lost host's VMs wave by wave (`limits.concurrentStarts` at a time, the boot
    /// storm limit); a wave's promotions run concurrently, the next wave waits for them.
    func failover(_ plan: FailoverPlan) async {
        let started = ContinuousClock.now
        for skipped in plan.notStarted {
            modules[skipped.name]?.notStartedReason = skipped.reason.description
            record(.notStarted(vm: skipped.name, reason: skipped.reason.description), "failover: \(skipped.name) not started: \(skipped.reason)")
        }
        for (index, wave) in plan.waves.enumerated() {
            record(.failoverWave(number: index + 1, vms: wave), "failover wave \(index + 1): \(wave.joined(separator: ", "))")
            await withTaskGroup(of: Void.self) { group in
                for name in wave {
                    group.addTask { await self.feed(named: name, .witnessVoteGranted) }
                }
            }
            for name in wave where modules[name]?.status.state == .alone {
                modules[name]?.arrivedByFailover = true
                modules[name]?.failovers?.increment()
            }
        }
        if !plan.waves.isEmpty {
            record("failover done in \(started.duration(to: .now)) (\(plan.waves.joined().count) started, \(plan.notStarted.count) not started)")
        }
    }

    func publish(_ kind: NodeEvent.Kind) {
        history.append(eventLog.append(kind, time: Date().timeIntervalSince1970))
        Counter(label: "vmha_events_total", dimensions: [("host", me.name), ("kind", kind.name)]).increment()
        stateChanged()
    }

    /// An event that is also a line for the operator (log and `vmha status`).
    func record(_ kind: NodeEvent.Kind, _ line: String) {
        publish(kind)
        logger.notice("\(line)")
        failoverLog.append(line)
        if failoverLog.count > 50 { failoverLog.removeFirst() }
    }

    // MARK: - Link, resync and network events

    /// Turns the volumes' status changes into events, in the order they happened.
    func statusLoop() async {
        for await change in linkChanges {
            linkChanged(change.volume, change.status)
            stateChanged()
        }
    }

    func linkChanged(_ volume: String, _ status: ReplicationStatus) {
        let before = linkSeen[volume]
        linkSeen[volume] = status
        if status.link != before?.link { publish(.link(volume: volume, state: status.link.rawValue)) }
        if status.resyncsStarted > (before?.resyncsStarted ?? 0) {
            publish(.resyncStarted(volume: volume, totalBytes: status.resyncTotalBytes, method: status.resyncMethod ?? "data"))
            resyncSamples[volume] = (monotonicNow(), 0)
            if nextResyncProgress == nil { nextResyncProgress = monotonicNow() + Self.resyncProgressInterval }
        }
        if status.resyncsCompleted > (before?.resyncsCompleted ?? 0) {
            resyncSamples[volume] = nil
            resyncRates[volume] = nil
            publish(.resyncFinished(volume: volume, bytes: status.resyncDoneBytes, sentBytes: status.resyncSentBytes, seconds: status.resyncSeconds))
        } else if status.link != .syncSource && before?.link == .syncSource {
            // The link failed: a new resync starts on the next connect.
            resyncSamples[volume] = nil
            resyncRates[volume] = nil
        }
        if status.link == .splitBrain && before?.link != .splitBrain {
            publish(.splitBrain(volume: volume, resolution: "not settled: the link waits for an operator (split_brain policy)"))
        }
        if let settled = status.splitBrainResolved, settled != before?.splitBrainResolved {
            publish(.splitBrain(volume: volume, resolution: settled))
        }
    }

    /// A volume's replication status here: its `PrimaryReplication`'s while primary, the replica
    /// server's while secondary (status, events, metrics and the replica state read this).
    func linkStatus(_ module: VMModule, volume index: Int) -> ReplicationStatus? {
        module.role == .primary
            ? (index < module.replications.count ? module.replications[index].status : nil)
            : replicaServer.status(of: module.volumeNames[index])
    }

    /// The primary side's current status of a volume this host resyncs.
    func primaryStatus(of volume: String) -> ReplicationStatus? {
        for module in modules.values where module.role == .primary {
            if let index = module.volumeNames.firstIndex(of: volume), index < module.replications.count { return module.replications[index].status }
        }
        return nil
    }

    func publishResyncProgress(at now: MonotonicInstant) {
        for (volume, sample) in resyncSamples.sorted(by: { $0.key < $1.key }) {
            guard let status = primaryStatus(of: volume), status.link == .syncSource else {
                resyncSamples[volume] = nil
                continue
            }
            let elapsed = (now - sample.at).components
            let seconds = Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
            let rate = seconds > 0 ? Double(status.resyncDoneBytes &- min(sample.done, status.resyncDoneBytes)) / seconds : 0
            publish(.resyncProgress(
                volume: volume, doneBytes: status.resyncDoneBytes, totalBytes: status.resyncTotalBytes, bytesPerSecond: rate,
                etaSeconds: rate > 0 ? Double(status.resyncRemainingBytes) / rate : nil))
            resyncRates[volume] = rate
            resyncSamples[volume] = (now, status.resyncDoneBytes)
        }
        nextResyncProgress = resyncSamples.isEmpty ? nil : now + Self.resyncProgressInterval
    }

    func publishNetworkChanges(at now: MonotonicInstant) {
        for (index, network) in liveness.status(at: now).networks.enumerated() where index < networksUp.count {
            let up = if case .up = network { true } else { false }
            guard up != networksUp[index] else { continue }
            networksUp[index] = up
            publish(.network(index: index, up: up))
        }
    }

    func record(_ line: String) { record(.note(line), line) }

    // MARK: - State machine

    func transition(_ module: VMModule, _ event: ModuleEvent) throws -> [ModuleAction] {
        let result = try ModuleStateMachine.transition(from: module.status, on: event)
        if result.status != module.status || !result.actions.isEmpty {
            logger.info("\(module.config.name): \(module.status) —\(event)→ \(result.status) \(result.actions)")
            publish(.module(vm: module.config.name, from: module.status, to: result.status, event: "\(event)", actions: result.actions.map(\.description)))
        }
        module.status = result.status
        return result.actions
    }

    @discardableResult
    func feed(named name: String, _ event: ModuleEvent) async -> String? {
        guard let module = modules[name] else { return "no such VM: \(name)" }
        return await feed(module, event)
    }

    /// Applies an event and carries out the actions it asks for, in order. Returns why the event
    /// was refused or which actions failed (nil: all done), for a caller that answers an operator.
    /// The machine refuses routinely (the control loop offers events that may not apply), so a
    /// refusal is logged at debug level here; callers acting for an operator log it themselves.
    @discardableResult
    func feed(_ module: VMModule, _ event: ModuleEvent) async -> String? {
        let actions: [ModuleAction]
        do {
            actions = try transition(module, event)
        } catch {
            logger.debug("\(module.config.name): \(event) ignored in \(module.status): \(error)")
            return "\(error)"
        }
        var failures: [String] = []
        var suspended = false
        for action in actions {
            do {
                switch action {
                case .promoteVolume:
                    await closeVolumes(module)
                    try await openVolumes(module, as: .primary)
                case .demoteVolume:
                    await closeVolumes(module)
                    try await openVolumes(module, as: .secondary)
                case .adoptMigratedDomain:
                    try await adoptMigratedDomain(module)
                    domainStarted(module)
                case .startDomain:
                    try await startDomain(module)
                    domainStarted(module)
                case .stopDomain:
                    try await stopDomain(module, graceful: !suspended)
                case .suspendIO:
                    suspended = true
                    // Giving the VM up: writes the peer misses fail, or the pause would wait on them.
                    for volume in module.volumes { await volume.setUnreplicatedWritePolicy(.fail) }
                    await suspendDomain(module)
                case .startResync:
                    break  // PrimaryReplication resyncs by itself on every (re)connect
                case .requestWitnessVote:
                    break  // `wantsLease` asks the witness while any module could need it
                case .reportError(let message):
                    module.lastError = message
                    logger.error("\(module.config.name): \(message)")
                }
            } catch {
                module.lastError = "\(action): \(error)"
                if case .startDomain = action { module.startRetryAt = monotonicNow() + startRetryDelay }
                failures.append(module.lastError!)
                publish(.actionFailed(vm: module.config.name, action: "\(action)", reason: "\(error)"))
                logger.error("\(module.config.name): \(action) failed: \(error)")
            }
        }
        if module.status.state == .second || module.status.state == .wait || module.status.state == .stop {
            // A module that does not run the VM here must not have a live domain here.
            // (Except the one a live migration is bringing in.)
            if module.status.state == .second && module.incomingExports == nil { await destroyStrayDomain(module) }
        }
        if ![.prim, .alone].contains(module.status.state) { module.startRetryAt = nil }
        module.settleFlags()
        return failures.isEmpty ? nil : failures.joined(separator: "; ")
    }

    /// Reads each volume once: its generations go to `module.generations` (the heartbeats send
    /// them), and the local replica's state, derived from the metadata and the replication links,
    /// is returned.
    func readLocalReplica(_ module: VMModule) async -> Cluster.ReplicaState {
        var worst: Cluster.ReplicaState = .upToDate
        func rank(_ s: Cluster.ReplicaState) -> Int {
            switch s {
            case .upToDate: 0
            case .syncSource: 1
            case .unknown: 2
            case .syncTarget: 3
            case .outdated: 4
            case .inconsistent: 5
            }
        }
        var generations: [GenerationSummary] = []
        defer { module.generations = generations }
        for (index, volume) in module.volumes.enumerated() {
            let replica = await volume.replicaState
            generations.append(replica.summary)
            var state: Cluster.ReplicaState
            switch replica.consistency {
            case .consistent: state = .upToDate
            case .outdated: state = .outdated
            case .inconsistent: state = .inconsistent
            }
            if module.role == .primary, index < module.replications.count, module.replications[index].status.link == .syncSource {
                state = .syncSource
            }
            if module.role == .secondary, replicaServer.status(of: module.volumeNames[index])?.link == .syncTarget {
                state = .syncTarget
            }
            if rank(state) > rank(worst) { worst = state }
        }
        return module.volumes.isEmpty ? .unknown : worst
    }

    // MARK: - Volumes

    func socketPath(_ volumeName: String) -> String { "\(config.nbd.socketDirectory)/\(volumeName).sock" }

    func openVolumes(_ module: VMModule, as role: VMModule.Role) async throws {
        let preferred = module.config.preferredHost ?? config.hosts[0].name
        var volumes: [LocalVolume] = []
        for (index, disk) in module.config.disks.enumerated() {
            var configuration = LocalVolume.Configuration(name: module.volumeNames[index], imagePath: disk.imagePath, metadataPath: disk.metadataPath)
            // A brand-new pair: the preferred host's copy is the initial data, the other a full-sync target.
            configuration.initialRole = preferred == me.name ? .primary : .secondary
            configuration.metricsDimensions = [("volume", module.volumeNames[index]), ("vm", module.config.name), ("host", me.name)]
            let volume = try await LocalVolume.open(configuration, ring: ring, logger: logger)
            volumes.append(volume)
            if role == .primary {
                try await volume.promote()
                await volume.setUnreplicatedWritePolicy(writePolicy)
            } else {
                try await volume.demote()
            }
        }
        module.volumes = volumes
        module.role = role
        guard role == .primary else {
            for volume in volumes { replicaServer.add(volume) }
            return
        }
        startPrimaryTask(module, exports: try listenNBD(module))
    }

    /// The module's NBD exports, listening (QEMU can connect once this returns); if one cannot
    /// listen, none does.
    func listenNBD(_ module: VMModule) throws -> [ListeningExport] {
        let mode = mode_t(config.nbd.socketMode)
        var exports: [ListeningExport] = []
        do {
            for volume in module.volumes {
                let server = try NBDServer(
                    volume: volume, socket: .init(path: socketPath(volume.configuration.name), mode: mode, group: socketGroup), logger: logger)
                exports.append(ListeningExport(server: server, listener: try server.listen()))
            }
        } catch {
            for export in exports { export.close() }
            throw error
        }
        return exports
    }

    /// What a primary runs, in one task on the ring's executor: its NBD servers (or `exports`,
    /// those an incoming live migration's domain already uses) and a replication per volume.
    func startPrimaryTask(_ module: VMModule, exports servers: [ListeningExport], migrated exports: Task<Void, Never>? = nil) {
        let peerAddress = TCPSocket.Address("\(peer.replicationAddress.host):\(peer.replicationAddress.port)")!
        let replications = module.volumes.map {
            PrimaryReplication(
                volume: $0, peer: peerAddress, options: replicationOptions, logger: logger,
                onLinkChange: { [input = linkChangesInput, name = $0.configuration.name] in input.yield((name, $0)) })
        }
        module.replications = replications
        let ring = self.ring
        module.primaryTask = Task(executorPreference: ring) {
            await withTaskCancellationHandler {
                await withDiscardingTaskGroup { group in
                    for export in servers {
                        group.addTask(executorPreference: ring) { await export.server.serve(listener: export.listener) }
                    }
                    for replication in replications {
                        group.addTask(executorPreference: ring) { await replication.run() }
                    }
                    if let exports { group.addTask { await exports.value } }
                }
            } onCancel: {
                exports?.cancel()
            }
        }
    }

    func closeVolumes(_ module: VMModule) async {
        await closeIncomingExports(module)
        if let task = module.primaryTask {
            // Cancelling the replication is a planned stop, not a lost link: PrimaryReplication
            // keeps the generation the peer already has, so the peer's promotion is an ordinary
            // new generation, not a split brain.
            task.cancel()
            await task.value
            module.primaryTask = nil
        }
        let wasSecondary = module.role == .secondary
        let volumes = module.volumes
        module.volumes = []
        module.replications = []
        module.role = .closed
        // Nothing more from the peer is applied to them once this returns.
        if wasSecondary { await withdrawFromReplicaServer(module) }
        for volume in volumes {
            do { try await volume.close() } catch { logger.error("closing \(volume.configuration.name): \(error)") }
        }
    }

    func withdrawFromReplicaServer(_ module: VMModule) async {
        for name in module.volumeNames { await replicaServer.remove(name) }
    }

    // MARK: - Domains

    func localDomain(_ module: VMModule) async -> Domain? {
        try? await libvirt?.domain(named: module.domainXML.name)
    }

    func startDomain(_ module: VMModule) async throws {
        guard let libvirt else { throw VMHAClusterError("no libvirt connection") }
        if let existing = await localDomain(module) {
            if try await existing.state().isActive {
                await resumeDomain(module)  // e.g. vmhad restarted under a running guest
                return
            }
            // A stale definition (e.g. from before a failover) may carry another UUID or old disks.
            try? await existing.undefine()
        }
        let sources = module.config.disks.enumerated().map { index, disk in
            let target: String
            switch disk.selector {
            case .target(let t): target = t
            case .source(let path): target = module.domainXML.disks.first { $0.sourcePath == path }?.target ?? path
            }
            return DomainXML.NBDSource(target: target, exportName: module.volumeNames[index], socketPath: socketPath(module.volumeNames[index]))
        }
        var xml = try module.domainXML.replacingDisks(with: sources)
        if me.domainType == .qemu { xml = xml.replacingOccurrences(of: "<domain type='kvm'", with: "<domain type='qemu'") }
        let domain = try await libvirt.define(xml: xml)
        try await domain.start()
        logger.notice("\(module.config.name): domain started on \(me.name)")
    }

    func stopDomain(_ module: VMModule, graceful: Bool) async throws {
        guard let domain = await localDomain(module) else { return }
        module.stoppingDomain = true
        defer { module.stoppingDomain = false }
        if graceful {
            _ = try await domain.shutdown(timeout: .seconds(60))
        } else if try await domain.state().isActive {
            try await domain.destroy()
        }
    }

    func destroyStrayDomain(_ module: VMModule) async {
        guard let domain = await localDomain(module), (try? await domain.state().isActive) == true else { return }
        logger.warning("\(module.config.name): the peer runs it; destroying the stale local domain")
        try? await domain.destroy()
    }

    func suspendDomain(_ module: VMModule) async {
        guard let domain = await localDomain(module) else { return }
        if case .running = try? await domain.state() { try? await domain.suspend() }
    }

    /// Resumes a paused domain; right after an NBD outage one resume may not be enough (QEMU
    /// reconnects only when a retried request finds the link down), so a few tries 1 s apart.
    func resumeDomain(_ module: VMModule) async {
        guard let domain = await localDomain(module) else { return }
        for _ in 0..<8 {
            guard case .paused = try? await domain.state() else { return }
            try? await domain.resume()
            // Poll: libvirt has no event for "resumable again" after an NBD outage; a few tries 1 s apart.
            try? await Task.sleep(for: .seconds(1))
        }
    }

    /// Domains paused by an NBD outage (e.g. a vmhad restart) are resumed once exports are back.
    func resumeLoop() async {
        while !Task.isCancelled && !stopping {
            // Timer: the resume sweep for domains an NBD outage paused (no libvirt event says when).
            try? await Task.sleep(for: .seconds(1))
            if fenced { continue }
            for name in order {
                guard let module = modules[name], [.prim, .alone].contains(module.status.state) else { continue }
                if let domain = await localDomain(module), case .paused(let reason) = try? await domain.state(), reason == .ioError || reason == .user {
                    if reason == .user && !fenced {
                        try? await domain.resume()
                    } else if reason == .ioError {
                        try? await domain.resume()
                    }
                }
            }
        }
    }

    // MARK: - Crashed domains

    /// Restarts a running VM's domain when QEMU dies or the guest crashes (libvirt's stopped/failed,
    /// stopped/crashed and crashed events); a guest that shuts itself down stays down. At most
    /// `maxCrashRestarts` in `crashRestartWindow`, then the VM is left down with an error.
    func domainEventLoop() async {
        guard let libvirt else { return }
        for await event in libvirt.events() {
            if stopping { return }
            guard case .domain(let domainEvent) = event else { continue }
            let reason: String
            switch domainEvent.kind {
            case .stopped(.failed): reason = "its QEMU process died"
            case .stopped(.crashed), .crashed: reason = "the guest crashed"
            case .stopped(.shutdown):
                if let module = modules.values.first(where: { $0.domainXML.name == domainEvent.domainName }),
                    [.prim, .alone].contains(module.status.state), !module.stoppingDomain
                {
                    record("\(module.config.name): the guest shut itself down; left down")
                }
                continue
            default: continue
            }
            guard let module = modules.values.first(where: { $0.domainXML.name == domainEvent.domainName }) else { continue }
            let name = module.config.name
            await inLoop(otherwise: ()) { node in
                if let module = node.modules[name] { await node.restartCrashed(module, reason: reason) }
            }
        }
    }

    /// A domain that failed to start is started again after this, as a crash restart (the same
    /// limit below): libvirt's failures are often passing (a busy daemon, a lock held).
    var startRetryDelay = Duration.seconds(5)
    static let maxCrashRestarts = 3
    static let crashRestartWindow = Duration.seconds(600)

    func restartCrashed(_ module: VMModule, reason: String) async {
        let name = module.config.name
        guard [.prim, .alone].contains(module.status.state), !fenced, !stopping else { return }
        let now = ContinuousClock.now
        module.crashRestarts.removeAll { $0.duration(to: now) > Self.crashRestartWindow }
        guard module.crashRestarts.count < Self.maxCrashRestarts else {
            module.lastError = "domain stopped (\(reason)) \(Self.maxCrashRestarts + 1) times within \(Self.crashRestartWindow); not restarted again"
            record("\(name): \(module.lastError!)")
            return
        }
        module.crashRestarts.append(now)
        record("\(name): \(reason); restarting its domain on \(me.name) (\(module.crashRestarts.count) of \(Self.maxCrashRestarts) in \(Self.crashRestartWindow))")
        await restartDomain(module)
    }

    /// Stops the domain hard if it runs and starts it again (the module machine's crash path).
    func restartDomain(_ module: VMModule) async {
        module.restarts?.increment()
        if let domain = await localDomain(module), (try? await domain.state().isActive) == true { try? await domain.destroy() }
        await feed(module, .domainCrashed)
    }

    // MARK: - Peer commands (switchover)

    /// A live migration's answer goes to its runner (waiting in the loop); any other command is
    /// queued for the loop.
    func peerCommand(_ command: PeerCommand) {
        guard let module = modules[command.vm] else { return }
        if [.livePrepared, .liveRefused].contains(command.kind) {
            module.liveReply = command
            stateChanged()
            return
        }
        enqueue(LoopJob(run: { await self.carryOut(command, module) }, cancel: {}))
    }

    /// A peer command, in the control loop.
    func carryOut(_ command: PeerCommand, _ module: VMModule) async {
        switch command.kind {
        case .promote:
            if [.prim, .alone].contains(module.status.state) {
                // A resend that crossed our promotion (`HostPolicy.promoteDue`).
                logger.debug("\(module.config.name): promote from \(peer.name) ignored: it already runs here")
                return
            }
            guard module.status.state == .second || module.status.state == .wait else {
                record("\(module.config.name): \(peer.name) asked to promote it, refused: it is \(module.status) here")
                return
            }
            let promote = PromoteDetail(decoding: command.detail)
            guard HostPolicy.acceptsPromote(handingOver: module.handedOver, ownHandover: module.handover, promoteHandover: promote.handover) else {
                record("\(module.config.name): a promote from \(peer.name) for hand-over \(promote.handover ?? 0) ignored: we are handing it over to \(peer.name) (hand-over \(module.handover))")
                return
            }
            module.handover = max(module.handover, promote.handover ?? 0)
            if promote.checkerMove {
                // The peer's checker moves it here: held here for the hold-down (RecoveryPolicy).
                module.recovery = RecoveryRecord(lastCheckerMove: monotonicNow())
            }
            if let problem = await feed(module, .promoteRequested) {
                record("\(module.config.name): promotion asked by \(peer.name) failed: \(problem)")
            } else if promote.evacuation, module.status.state == .prim {
                // Like a failover's VM: back by its failback policy once the hold-down ends.
                module.arrivedByFailover = true
            }
        case .handOver:
            if let problem = await switchover(module) {
                record("\(module.config.name): hand-over asked by \(peer.name) failed: \(problem)")
            }
        case .handOverLive:
            if let problem = await migrateLive(module) {
                record("\(module.config.name): \(problem)")
                sendPeerCommand(.liveRefused, vm: module.config.name, detail: problem)
            }
        case .prepareLive:
            await prepareIncomingMigration(module)
        case .liveArrived:
            guard module.incomingExports != nil else { return }
            await feed(module, .liveMigrationArrived)
        case .abortLive:
            await closeIncomingExports(module)
        case .livePrepared, .liveRefused:
            break
        }
    }

    func sendPeerCommand(_ kind: PeerCommand.Kind, vm: String, detail: String = "") {
        commandSequence += 1
        let bytes = PeerCommand(
            kind: kind, sender: me.name, target: peer.name, vm: vm, detail: detail, incarnation: incarnation, sequence: commandSequence
        ).encode(key: key)
        for (index, socket) in heartbeatSockets.enumerated() {
            let target = peer.heartbeatAddresses[index]
            if let address = TCPSocket.Address("\(target.host):\(target.port)") { socket.send(bytes, to: address) }
        }
    }

    /// Clean shutdown here, wait for the peer's replica, role swap, then the peer starts it.
    func switchover(_ module: VMModule, byChecker: Bool = false, evacuation: Bool = false) async -> String? {
        guard module.status.state == .prim else { return "\(module.config.name) is \(module.status.state.rawValue) here, not PRIM" }
        guard await waitForPeerUpToDate(module.config.name, timeout: .seconds(10)) else {
            let summary = peerSummaries[module.config.name].map { "\($0.state.rawValue)/\($0.replica.rawValue)" } ?? "unknown"
            return "the peer's replica is not UpToDate and in sync within 10 s (peer \(peerState.rawValue), its view \(summary), links \(module.replications.map(\.status.link.rawValue)))"
        }
        if let problem = await feed(module, .switchoverRequested) { return "switchover refused: \(problem)" }
        guard module.status.state == .second else {
            return "switchover left \(module.config.name) \(module.status) here, not SECOND (last error: \(module.lastError ?? "none"))"
        }
        // The first promote; the control loop sends more (`HostPolicy.promoteDue`) until the
        // peer runs it.
        module.handedOver = true
        module.handover += 1
        module.promotesSent = 1
        module.lastPromoteSent = monotonicNow()
        sendPeerCommand(.promote, vm: module.config.name, detail: PromoteDetail(handover: module.handover, checkerMove: byChecker, evacuation: evacuation).encoded)
        return nil
    }

    /// Where this host runs the VM, its own view decides: a secondary calls itself UpToDate from
    /// its metadata until the connect's decision has made it a sync target, so the peer's summary
    /// alone may say UpToDate just before a resync toward it starts. Every link must be attached
    /// with nothing left to send.
    func replicasInSync(_ vm: String) async -> Bool {
        guard let module = modules[vm], module.role == .primary else { return true }
        guard module.replications.count == module.volumes.count else { return false }
        for (replication, volume) in zip(module.replications, module.volumes) {
            guard replication.status.link == .connected, await volume.dirtyBytes == 0 else { return false }
        }
        return true
    }

    func waitForPeerUpToDate(_ vm: String, timeout: Duration) async -> Bool {
        await waitUntil(.now + timeout) {
            guard $0.peerState == .alive, let summary = $0.peerSummaries[vm], summary.replica == .upToDate else { return false }
            return await $0.replicasInSync(vm)
        }
    }

    // MARK: - Waiting for a change

    /// Wakes every caller waiting in `nextChange`: a heartbeat was handled, a module changed
    /// state, a replication link moved, or a peer command's answer arrived.
    func stateChanged() {
        changes &+= 1
        let waiters = changeWaiters
        changeWaiters = [:]
        for waiter in waiters.values {
            waiter.timer.cancel()
            waiter.continuation.resume()
        }
    }

    /// Returns at the next `stateChanged()`, or at `deadline`.
    func nextChange(before deadline: ContinuousClock.Instant) async {
        nextWaiterID += 1
        let id = nextWaiterID
        await withCheckedContinuation { continuation in
            // Timer: the deadline is an event of its own.
            let timer = Task { [weak self] in
                try? await Task.sleep(until: deadline)
                await self?.expireWaiter(id)
            }
            changeWaiters[id] = (continuation, timer)
        }
    }

    private func expireWaiter(_ id: UInt64) {
        changeWaiters.removeValue(forKey: id)?.continuation.resume()
    }

    /// Whether `condition` held before `deadline`; it is looked at again on every change.
    func waitUntil(_ deadline: ContinuousClock.Instant, _ condition: @Sendable (isolated ClusterNode) async -> Bool) async -> Bool {
        while true {
            if await condition(self) { return true }
            guard ContinuousClock.now < deadline else { return false }
            await nextChange(before: deadline)
        }
    }
}

/// An NBD server whose socket listens, not yet served.
struct ListeningExport: Sendable {
    var server: NBDServer
    var listener: FileDescriptor

    func close() { server.close(listener: listener) }
}

/// A unit of the control loop's work (`ClusterNode.inLoop`).
struct LoopJob {
    var run: () async -> Void
    /// Answers the caller when the loop stops before running it.
    var cancel: () -> Void
}

struct VMHAClusterError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
