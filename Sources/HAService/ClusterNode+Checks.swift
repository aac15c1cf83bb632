import Cluster
import Foundation

/// One check's state on this host: as ``CheckMachine`` judges it, its last result, whether its
/// probe runs now (one probe at a time).
struct CheckRun {
    var status = CheckStatus()
    var lastResult: String?
    var running = false
}

/// The checks (issue 15, docs/ha.md "Checks and recovery"). Each `[[vms.checks]]` entry is
/// probed on its interval by the host that runs the VM; results are judged by `CheckMachine` in
/// the control loop, and a failed check is acted on as `RecoveryPolicy` says: restart here, move
/// to the peer (a switchover), or leave it with the reason. Each `[[hosts.checks]]` entry of this
/// host is probed all the time; while one has failed, `Evacuation` moves this host's VMs to the
/// peer.
extension ClusterNode {
    /// One timer for every check: sleeps until the next one is due, starts its probe (a probe
    /// still running is not started twice), and feeds the result to the loop.
    func checkLoop() async {
        startHostChecks()
        var due: [String: ContinuousClock.Instant] = [:]
        await withTaskGroup(of: Void.self) { group in
            while !stopping, !Task.isCancelled {
                let now = ContinuousClock.now
                // VMs added with `vmha add` are picked up within a second.
                var next = now + .seconds(1)
                for name in order {
                    guard let module = modules[name] else { continue }
                    for (index, check) in module.config.checks.enumerated() {
                        let key = "\(name)\u{0}\(index)"
                        var at = due[key] ?? now + check.interval
                        if at <= now {
                            at = now + check.interval
                            if [.prim, .alone].contains(module.status.state), !module.stoppingDomain, !fenced, !module.checks[index].running {
                                module.checks[index].running = true
                                let starts = module.domainStarts, host = me.name, libvirt = libvirt, domain = module.domainXML.name
                                group.addTask {
                                    let result = await CheckProbe.run(
                                        check.probe, timeout: check.timeout, vm: name, host: host, libvirt: libvirt, domain: domain)
                                    await self.queueCheckResult(vm: name, index: index, domainStarts: starts, result)
                                }
                            }
                        }
                        due[key] = at
                        next = min(next, at)
                    }
                }
                for (index, check) in me.checks.enumerated() {
                    let key = "\u{0}host\u{0}\(index)"
                    var at = due[key] ?? now
                    if at <= now {
                        at = now + check.interval
                        if !hostChecks[index].running {
                            hostChecks[index].running = true
                            let host = me.name
                            group.addTask {
                                let result = await CheckProbe.run(check.probe, timeout: check.timeout, host: host)
                                await self.queueHostCheckResult(index: index, result)
                            }
                        }
                    }
                    due[key] = at
                    next = min(next, at)
                }
                try? await Task.sleep(until: next)
            }
            group.cancelAll()
        }
    }

    /// Results are judged and acted on in the control loop, in arrival order.
    func queueCheckResult(vm: String, index: Int, domainStarts: Int, _ result: CheckProbe.Result) {
        enqueue(LoopJob(run: { await self.checkResult(vm: vm, index: index, domainStarts: domainStarts, result) }, cancel: {
            self.modules[vm]?.checks[index].running = false
        }))
    }

    func queueHostCheckResult(index: Int, _ result: CheckProbe.Result) {
        enqueue(LoopJob(run: { await self.hostCheckResult(index: index, result) }, cancel: {
            self.hostChecks[index].running = false
        }))
    }

    /// A domain started here: its checks start over, with their start-up grace.
    func domainStarted(_ module: VMModule) {
        module.domainStarts += 1
        let now = monotonicNow()
        for (index, check) in module.config.checks.enumerated() {
            module.checks[index].status = CheckMachine.transition(from: module.checks[index].status, on: .domainStarted(at: now), thresholds: check.thresholds).status
        }
    }

    func checkResult(vm: String, index: Int, domainStarts: Int, _ result: CheckProbe.Result) async {
        guard let module = modules[vm], index < module.checks.count else { return }
        module.checks[index].running = false
        // A result from before the last start, or of a VM that no longer runs here, says nothing.
        guard module.domainStarts == domainStarts, [.prim, .alone].contains(module.status.state), !fenced, !stopping else { return }
        let check = module.config.checks[index]
        let now = monotonicNow()
        let event: CheckEvent = result.healthy ? .passed(at: now) : .failed(at: now, reason: result.detail)
        let (status, actions) = CheckMachine.transition(from: module.checks[index].status, on: event, thresholds: check.thresholds)
        module.checks[index].status = status
        module.checks[index].lastResult = result.detail
        for action in actions {
            switch action {
            case .report(let health, let detail):
                record(.check(vm: vm, check: check.name, health: health.rawValue, detail: detail), "\(vm): check \(check.name) \(health.rawValue): \(detail)")
            case .recover(let reason):
                await recover(module, because: "check \(check.name) failed: \(reason)")
            }
        }
    }

    func recover(_ module: VMModule, because reason: String) async {
        let vm = module.config.name
        let peerReplica = peerSummaries[vm]?.replica
        let readiness = PeerReadiness(alive: peerState == .alive, replicaUpToDate: peerReplica == .upToDate, failingChecks: peerFailingHostChecks)
        let (record, decision) = RecoveryPolicy.decide(module.recovery, at: monotonicNow(), limits: module.config.recovery, peer: readiness)
        module.recovery = record
        switch decision {
        case .restartHere(let attempt, let limit):
            let detail = "\(reason); restart \(attempt) of \(limit) on \(me.name)"
            self.record(.recovery(vm: vm, action: "restart", detail: detail), "\(vm): \(detail)")
            await restartDomain(module)
        case .moveToPeer:
            let detail = "\(reason); restarted \(module.config.recovery.restarts) times, moving it to \(peer.name)"
            self.record(.recovery(vm: vm, action: "move", detail: detail), "\(vm): \(detail)")
            if let problem = await switchover(module, byChecker: true) {
                module.lastError = "\(reason); the move to \(peer.name) failed: \(problem)"
                self.record(.recovery(vm: vm, action: "gaveUp", detail: module.lastError!), "\(vm): \(module.lastError!)")
            }
        case .giveUp(let why):
            module.lastError = "\(reason); \(why); left as it is"
            self.record(.recovery(vm: vm, action: "gaveUp", detail: module.lastError!), "\(vm): \(module.lastError!)")
        }
    }

    /// The checks as `vmha status` shows them (none where the VM does not run).
    func checkReports(_ module: VMModule) -> [CheckReport]? {
        guard !module.config.checks.isEmpty, [.prim, .alone].contains(module.status.state) else { return nil }
        return module.config.checks.enumerated().map { index, check in
            CheckReport(name: check.name, health: module.checks[index].status.health.rawValue,
                        consecutiveFailures: module.checks[index].status.consecutiveFailures, lastResult: module.checks[index].lastResult)
        }
    }

    // MARK: - Host checks

    /// Host checks start with vmhad: their start-up grace (default none) counts from here.
    func startHostChecks() {
        let now = monotonicNow()
        hostChecks = me.checks.map { check in
            CheckRun(status: CheckMachine.transition(from: CheckStatus(), on: .domainStarted(at: now), thresholds: check.thresholds).status)
        }
    }

    /// This host's host checks that have failed (or flap): what its heartbeats tell the peer, so
    /// that the peer neither evacuates onto this host nor fails VMs back to it.
    var failingHostCheckNames: [String] {
        zip(me.checks, hostChecks).filter { [.failed, .flapping].contains($0.1.status.health) }.map(\.0.name)
    }

    func hostCheckResult(index: Int, _ result: CheckProbe.Result) async {
        guard index < hostChecks.count else { return }
        hostChecks[index].running = false
        guard !stopping else { return }
        let check = me.checks[index]
        let now = monotonicNow()
        let event: CheckEvent = result.healthy ? .passed(at: now) : .failed(at: now, reason: result.detail)
        let (status, actions) = CheckMachine.transition(from: hostChecks[index].status, on: event, thresholds: check.thresholds)
        hostChecks[index].status = status
        hostChecks[index].lastResult = result.detail
        for case .report(let health, let detail) in actions {
            record(.hostCheck(host: me.name, check: check.name, health: health.rawValue, detail: detail), "host check \(check.name) \(health.rawValue): \(detail)")
        }
        if hostChecks.contains(where: { $0.status.health == .failed }) {
            await evacuate()
        } else if !evacuationNotes.isEmpty {
            evacuationNotes = [:]
        }
        stateChanged()
    }

    /// Level-triggered (at every host check result while one has failed): each VM running here
    /// moves to the peer if `Evacuation` says it can; one that stays is reported once per reason.
    func evacuate() async {
        let now = monotonicNow()
        let failing = zip(me.checks, hostChecks).filter { $0.1.status.health == .failed }.map(\.0.name)
        let vms = order.compactMap { modules[$0] }.map { module in
            Evacuation.VM(
                name: module.config.name, priority: module.config.priority,
                runsHere: [.prim, .alone].contains(module.status.state) && !module.stoppingDomain,
                peerReplicaUpToDate: peerSummaries[module.config.name]?.replica == .upToDate,
                held: RecoveryPolicy.isHeld(module.recovery, at: now, limits: module.config.recovery))
        }
        for decision in Evacuation.plan(failingHere: failing, peerAlive: peerState == .alive, failingOnPeer: peerFailingHostChecks, vms: vms) {
            switch decision {
            case .move(let vm):
                guard let module = modules[vm], module.status.state == .prim else { continue }
                evacuationNotes[vm] = nil
                let detail = "host check \(failing.joined(separator: ", ")) failed on \(me.name); moving it to \(peer.name)"
                record(.recovery(vm: vm, action: "evacuate", detail: detail), "\(vm): \(detail)")
                if let problem = await switchover(module, byChecker: true, evacuation: true) {
                    // Tried again at the next host check result.
                    record(.recovery(vm: vm, action: "stay", detail: "the move to \(peer.name) failed: \(problem)"), "\(vm): the move to \(peer.name) failed: \(problem)")
                }
            case .stay(let vm, let reason):
                guard evacuationNotes[vm] != reason else { continue }
                evacuationNotes[vm] = reason
                record(.recovery(vm: vm, action: "stay", detail: reason), "\(vm): \(reason)")
            }
        }
    }

    /// The host checks as `vmha status` shows them.
    func hostCheckReports() -> [CheckReport]? {
        guard !me.checks.isEmpty else { return nil }
        return zip(me.checks, hostChecks).map { check, run in
            CheckReport(name: check.name, health: run.status.health.rawValue, consecutiveFailures: run.status.consecutiveFailures, lastResult: run.lastResult)
        }
    }
}
