import Cluster
import Foundation

/// The VMs' checks (issue 15, docs/ha.md "Checks and recovery"): each `[[vms.checks]]` entry is
/// probed on its interval by the host that runs the VM; results are judged by `CheckMachine` in
/// the control loop, and a failed check is acted on as `RecoveryPolicy` says: restart here, move
/// to the peer (a switchover), or leave it with the reason.
extension ClusterNode {
    /// One timer for every check: sleeps until the next one is due, starts its probe (a probe
    /// still running is not started twice), and feeds the result to the loop.
    func checkLoop() async {
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
                            if [.prim, .alone].contains(module.status.state), !module.stoppingDomain, !fenced, !module.checkRunning[index] {
                                module.checkRunning[index] = true
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
                try? await Task.sleep(until: next)
            }
            group.cancelAll()
        }
    }

    /// Results are judged and acted on in the control loop, in arrival order.
    func queueCheckResult(vm: String, index: Int, domainStarts: Int, _ result: CheckProbe.Result) {
        enqueue(LoopJob(run: { await self.checkResult(vm: vm, index: index, domainStarts: domainStarts, result) }, cancel: {
            self.modules[vm]?.checkRunning[index] = false
        }))
    }

    /// A domain started here: its checks start over, with their start-up grace.
    func domainStarted(_ module: VMModule) {
        module.domainStarts += 1
        let now = monotonicNow()
        for (index, check) in module.config.checks.enumerated() {
            module.checkStatuses[index] = CheckMachine.transition(from: module.checkStatuses[index], on: .domainStarted(at: now), thresholds: check.thresholds).status
        }
    }

    func checkResult(vm: String, index: Int, domainStarts: Int, _ result: CheckProbe.Result) async {
        guard let module = modules[vm], index < module.checkStatuses.count else { return }
        module.checkRunning[index] = false
        // A result from before the last start, or of a VM that no longer runs here, says nothing.
        guard module.domainStarts == domainStarts, [.prim, .alone].contains(module.status.state), !fenced, !stopping else { return }
        let check = module.config.checks[index]
        let now = monotonicNow()
        let event: CheckEvent = result.healthy ? .passed(at: now) : .failed(at: now, reason: result.detail)
        let (status, actions) = CheckMachine.transition(from: module.checkStatuses[index], on: event, thresholds: check.thresholds)
        module.checkStatuses[index] = status
        module.checkResults[index] = result.detail
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
        let readiness = PeerReadiness(alive: peerState == .alive, replicaUpToDate: peerReplica == .upToDate)
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
            CheckReport(name: check.name, health: module.checkStatuses[index].health.rawValue,
                        consecutiveFailures: module.checkStatuses[index].consecutiveFailures, lastResult: module.checkResults[index])
        }
    }
}
