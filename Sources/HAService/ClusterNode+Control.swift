import Cluster
import Foundation
import Libvirt
import Replication
import Volume

extension ClusterNode {
    /// Answers one control request; every refusal is logged with the reason the reply carries.
    public func handle(_ request: ControlRequest) async -> ControlResponse {
        let response = await answer(request)
        if !response.ok {
            logger.warning("control request refused", metadata: [
                "command": "\(request.command)", "vm": "\(request.vm ?? "-")", "reason": "\(response.error ?? "no reason given")",
            ])
        }
        if Self.operatorCommands.contains(request.command), request.dryRun != true {
            publish(.command(name: request.command, vm: request.vm, ok: response.ok, detail: response.error ?? response.message ?? ""))
        }
        return response
    }

    /// Commands that change something: their outcome is an event.
    static let operatorCommands: Set<String> = ["migrate", "resync", "add", "remove", "place"]

    /// The events after `since` (first the current state when asked), waiting up to
    /// `waitSeconds` (at most a minute) for one when there is none yet.
    func eventsReport(_ request: ControlRequest) async -> EventsReport {
        let since = request.since ?? (request.now == true ? eventLog.lastSequence : nil)
        if let wait = request.waitSeconds, wait > 0, let since, eventLog.lastSequence <= since {
            _ = await waitUntil(.now + .milliseconds(Int64(min(wait, 60) * 1000))) { $0.eventLog.lastSequence > since }
        }
        var (events, missed) = eventLog.since(since)
        if request.now == true { events = currentState() + events }
        return EventsReport(host: me.name, incarnation: incarnation, lastSequence: eventLog.lastSequence, missed: missed, events: events)
    }

    /// The node's state as events, numbered with the sequence they are current at.
    func currentState() -> [NodeEvent] {
        let time = Date().timeIntervalSince1970
        var kinds: [NodeEvent.Kind] = [.peer(state: peerState)]
        for (index, up) in networksUp.enumerated() { kinds.append(.network(index: index, up: up)) }
        if config.witness != nil { kinds.append(.lease(outcome: lastLeaseOutcome)) }
        kinds.append(.fence(on: fenced))
        for name in order {
            let module = modules[name]!
            var links: [String: String] = [:]
            for (index, volume) in module.volumeNames.enumerated() {
                links[volume] = linkStatus(module, volume: index)?.link.rawValue ?? "standalone"
            }
            kinds.append(.exists(vm: name, status: module.status, links: links))
        }
        return kinds.map { NodeEvent(sequence: eventLog.lastSequence, incarnation: incarnation, time: time, kind: $0) }
    }

    private func answer(_ request: ControlRequest) async -> ControlResponse {
        switch request.command {
        case "status":
            return ControlResponse(ok: true, status: await statusReport())
        case "events":
            return ControlResponse(ok: true, events: await eventsReport(request))
        case "migrate":
            guard let vm = request.vm, let module = modules[vm] else { return ControlResponse(ok: false, error: "no such VM: \(request.vm ?? "")") }
            guard let to = request.to, to == me.name || to == peer.name else { return ControlResponse(ok: false, error: "--to must be \(me.name) or \(peer.name)") }
            return await migrate(module, to: to, force: request.force ?? false, live: request.live ?? false)
        case "resync":
            guard let vm = request.vm, let module = modules[vm] else { return ControlResponse(ok: false, error: "no such VM: \(request.vm ?? "")") }
            guard module.role == .primary else {
                return ControlResponse(ok: false, error: "\(vm) is not primary on \(me.name); run the resync on the host that runs it (\(peer.name))")
            }
            if let rate = request.rate {
                for replication in module.replications { replication.setResyncMaxRate(rate == 0 ? nil : rate) }
                let text = rate == 0 ? "no maximum" : "at most \(rate) bytes/s"
                logger.notice("resync rate set", metadata: ["vm": "\(vm)", "rate": "\(text)"])
                if request.mode == nil && request.full == nil {
                    return ControlResponse(ok: true, message: "resync rate of \(vm): \(text)")
                }
            }
            let name = request.mode ?? (request.full == true ? "full" : "incremental")
            guard let mode = PrimaryReplication.ResyncMode(rawValue: name) else {
                return ControlResponse(ok: false, error: "unknown resync mode \(name) (incremental, full, checksum, verify)")
            }
            for replication in module.replications { replication.requestResync(mode) }
            return ControlResponse(ok: true, message: "\(name) resync of \(vm) requested")
        case "add":
            guard let block = request.vmTOML else { return ControlResponse(ok: false, error: "add: no VM given") }
            return await inLoop(otherwise: Self.stoppingResponse) { await $0.addVM(block: block) }
        case "remove":
            guard let vm = request.vm else { return ControlResponse(ok: false, error: "remove: no VM given") }
            let stop = request.stop ?? false
            return await inLoop(otherwise: Self.stoppingResponse) { await $0.removeVM(vm, stop: stop) }
        case "place":
            return await place(dryRun: request.dryRun ?? true, vms: request.vms, on: request.on)
        default:
            return ControlResponse(ok: false, error: "unknown command \(request.command)")
        }
    }

    static let stoppingResponse = ControlResponse(ok: false, error: "vmhad is stopping")

    /// The control plane's part (module and replica states, the peer's view, lease, fence, link
    /// states, the event sequence) is read without a suspension in between: one snapshot of the
    /// node, never half of a step. The I/O details (domain state, dirty bytes) are read after.
    func statusReport() async -> ClusterStatusReport {
        struct Row {
            var module: VMModule
            var report: VMStatusReport
            var volumes: [(volume: LocalVolume, status: ReplicationStatus?)]
        }
        let live = liveness.status(at: monotonicNow())
        var rows: [Row] = []
        for name in order {
            let module = modules[name]!
            let summary = peerState == .alive ? peerSummaries[name] : nil
            var runsOn: String?
            if [.prim, .alone].contains(module.status.state) { runsOn = me.name }
            else if let summary, [.prim, .alone].contains(summary.state) { runsOn = peer.name }
            let volumes = module.volumes.enumerated().map { index, volume in (volume, linkStatus(module, volume: index)) }
            var report = VMStatusReport(
                name: name, state: module.status.state.rawValue, replica: module.status.replica.rawValue,
                peerState: summary?.state.rawValue, peerReplica: summary?.replica.rawValue, runsOn: runsOn, domain: nil,
                lastError: module.lastError, notStarted: module.notStartedReason, volumes: [])
            report.checks = checkReports(module)
            rows.append(Row(module: module, report: report, volumes: volumes))
        }
        let networks = live.networks.map { if case .up = $0 { "up" } else { "silent" } }
        var report = ClusterStatusReport(
            host: me.name, peer: peer.name, peerState: peerState.rawValue, networks: networks,
            witness: config.witness.map { "\($0.address)" }, lease: lastLeaseOutcome, fenced: fenced, vms: [], events: failoverLog,
            eventSequence: eventLog.lastSequence)
        report.hostChecks = hostCheckReports()
        report.peerFailingHostChecks = peerFailingHostChecks.isEmpty ? nil : peerFailingHostChecks
        for row in rows {
            var vm = row.report
            if let d = await localDomain(row.module), let state = try? await d.state() { vm.domain = "\(state)" }
            for (index, (volume, status)) in row.volumes.enumerated() {
                // The resync events' own figures (`resyncProgress`), only while it runs.
                let rate = status?.link == .syncSource ? resyncRates[row.module.volumeNames[index]] : nil
                var volumeReport = VolumeReport(
                    name: row.module.volumeNames[index], role: row.module.role == .primary ? "primary" : "secondary",
                    link: status?.link.rawValue ?? "standalone", dirtyBytes: await volume.dirtyBytes,
                    resyncTotalBytes: status?.resyncTotalBytes ?? 0, resyncDoneBytes: status?.resyncDoneBytes ?? 0,
                    resyncSeconds: status?.resyncSeconds ?? 0, resyncsCompleted: status?.resyncsCompleted ?? 0, lastError: status?.lastError,
                    splitBrainResolved: status?.splitBrainResolved, resyncBytesPerSecond: rate,
                    resyncETASeconds: rate.flatMap { rate in status.flatMap { rate > 0 ? Double($0.resyncRemainingBytes) / rate : nil } })
                volumeReport.image = volume.configuration.imagePath
                volumeReport.metadata = volume.configuration.metadataPath
                volumeReport.generation = String(await volume.metadataSnapshot.generations.current, radix: 16, uppercase: true)
                let writes = await volume.guestWrites
                (volumeReport.guestWrites, volumeReport.guestWriteSeconds) = (writes.count, writes.seconds)
                vm.volumes.append(volumeReport)
            }
            report.vms.append(vm)
        }
        return report
    }

    /// Planned switchover: clean shutdown where it runs, the target's replica must be UpToDate
    /// (with `force`, wait for its resync instead of refusing), role swap, start on the target.
    /// `live`: libvirt live migration instead of shutdown and start (ClusterNode+LiveMigration.swift).
    func migrate(_ module: VMModule, to target: String, force: Bool, live: Bool = false) async -> ControlResponse {
        let name = module.config.name
        if target == me.name {
            if [.prim, .alone].contains(module.status.state) { return ControlResponse(ok: true, message: "\(name) already runs on \(me.name)") }
            guard peerState == .alive else { return ControlResponse(ok: false, error: "peer \(peer.name) is not reachable") }
            if module.status.replica != .upToDate {
                guard force else { return ControlResponse(ok: false, error: "replica of \(name) on \(me.name) is \(module.status.replica.rawValue), not UpToDate (use --force to wait for the resync)") }
                if !(await waitLocalUpToDate(module, timeout: .seconds(600))) { return ControlResponse(ok: false, error: "replica of \(name) did not become UpToDate") }
            }
            module.liveReply = nil
            sendPeerCommand(live ? .handOverLive : .handOver, vm: name)
            // The runner reports a failed live migration back.
            _ = await waitUntil(.now + .seconds(120)) { node in
                guard let module = node.modules[name] else { return true }
                return [.prim, .alone].contains(module.status.state) || (live && module.liveReply?.kind == .liveRefused)
            }
            if [.prim, .alone].contains(module.status.state) { return ControlResponse(ok: true, message: "\(name) now runs on \(me.name)") }
            if live, let reply = module.liveReply, reply.kind == .liveRefused { return ControlResponse(ok: false, error: reply.detail) }
            return ControlResponse(ok: false, error: "\(name) did not start on \(me.name) within 120 s (last error: \(module.lastError ?? "none"))")
        }
        // Target is the peer: this host must run it.
        guard module.status.state == .prim else {
            if let s = peerSummaries[name], [.prim, .alone].contains(s.state) { return ControlResponse(ok: true, message: "\(name) already runs on \(peer.name)") }
            return ControlResponse(ok: false, error: "\(name) is \(module.status.state.rawValue) here; nothing to hand over")
        }
        if let s = peerSummaries[name], s.replica != .upToDate {
            guard force else { return ControlResponse(ok: false, error: "replica of \(name) on \(peer.name) is \(s.replica.rawValue), not UpToDate (use --force to wait for the resync)") }
            if !(await waitForPeerUpToDate(name, timeout: .seconds(600))) { return ControlResponse(ok: false, error: "replica on \(peer.name) did not become UpToDate") }
        }
        let problem = await inLoop(otherwise: String?("vmhad is stopping")) { node -> String? in
            guard let module = node.modules[name] else { return "\(name) was removed" }
            return live ? await node.migrateLive(module) : await node.switchover(module)
        }
        if let problem { return ControlResponse(ok: false, error: problem) }
        if await waitUntil(.now + .seconds(120), { $0.peerSummaries[name]?.state == .prim }) {
            return ControlResponse(ok: true, message: "\(name) now runs on \(peer.name)")
        }
        return ControlResponse(ok: false, error: "\(name) was stopped here but \(peer.name) did not report it running within 120 s")
    }

    func waitLocalUpToDate(_ module: VMModule, timeout: Duration) async -> Bool {
        let name = module.config.name
        return await waitUntil(.now + timeout) { $0.modules[name]?.status.replica == .upToDate }
    }

    func place(dryRun: Bool, vms names: [String]?, on target: String?) async -> ControlResponse {
        var current: [String: String] = [:]
        var vms: [Placement.VM] = []
        for name in order {
            let module = modules[name]!
            vms.append(Placement.VM(name: name, resources: module.resources, preferredHost: module.config.preferredHost))
            if [.prim, .alone].contains(module.status.state) { current[name] = me.name }
            else if let s = peerSummaries[name], [.prim, .alone].contains(s.state) { current[name] = peer.name }
        }
        if let target, target != me.name && target != peer.name {
            return ControlResponse(ok: false, error: "--on must be \(me.name) or \(peer.name)")
        }
        let capacities = placementCapacities()
        let hosts = capacities.map { Placement.Host(name: $0.name, capacity: Resources(vcpus: $0.vcpus, memoryMiB: $0.memoryMiB)) }
        let pinned = target.map { host in Dictionary(uniqueKeysWithValues: (names ?? []).map { ($0, host) }) } ?? [:]
        let plan: PlacementPlan
        do {
            plan = try Placement.plan(
                vms: vms, hosts: hosts, current: current, limits: .init(maxVMs: config.limits.maxVMs),
                movable: names.map(Set.init), pinned: pinned)
        } catch {
            return ControlResponse(ok: false, error: "\(error)")
        }
        var applied: [String] = []
        if !dryRun {
            for move in plan.moves {
                guard let module = modules[move.vm] else { continue }
                let result = await migrate(module, to: move.to, force: false)
                applied.append("\(move): \(result.ok ? "done" : "failed: \(result.error ?? "")")")
                if !result.ok { break }
            }
        }
        return ControlResponse(ok: true, place: PlaceReport(
            hosts: capacities, moves: plan.moves.map(\.description), unplaced: plan.unplaced, scoreBefore: plan.scoreBefore,
            scoreAfter: plan.scoreAfter, applied: applied))
    }

    /// Both hosts' capacities in configuration order: this host's own; the peer's from this
    /// host's config entry for it if set, else from its heartbeats, else assumed like this host.
    func placementCapacities() -> [PlaceReport.HostCapacity] {
        config.hosts.map { host in
            if host.name == me.name {
                let configured = me.capacity.vcpus != nil || me.capacity.memoryMiB != nil
                return .init(name: host.name, vcpus: localCapacity.vcpus, memoryMiB: localCapacity.memoryMiB, source: configured ? "config" : "libvirt")
            }
            let reported = peerCapacity
            let base = reported ?? localCapacity
            let vcpus = host.capacity.vcpus ?? base.vcpus, memory = host.capacity.memoryMiB ?? base.memoryMiB
            let source = host.capacity.vcpus != nil && host.capacity.memoryMiB != nil ? "config"
                : reported != nil ? "peer heartbeat" : "assumed like \(me.name)"
            return .init(name: host.name, vcpus: vcpus, memoryMiB: memory, source: source)
        }
    }
}

extension ClusterNode {
    /// This host's part of a support bundle, for the peer that asked over the peer link.
    func supportPart(sinceSeconds: UInt64) async -> [UInt8] {
        let bundle = SupportBundle(host: me.name, configPath: configPath, configuration: config, sinceSeconds: sinceSeconds, key: key)
        let status = await statusReport()
        return await Self.collect(bundle, status: status, libvirt: libvirt)
    }

    /// Off the ring and off the actor: commands, files and libvirt calls take their time.
    private nonisolated static func collect(_ bundle: SupportBundle, status: ClusterStatusReport, libvirt: LibvirtConnection?) async -> [UInt8] {
        await withTaskExecutorPreference(globalConcurrentExecutor) {
            SupportBundle.encode(await bundle.collect(status: status, statusProblem: nil, libvirt: libvirt))
        }
    }
}
