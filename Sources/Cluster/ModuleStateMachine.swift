/// The per-VM module state machine: one pure function from (status, event) to (status, actions).
///
/// Safety rules enforced here (docs/state-machine.md lists every cell):
/// - never PRIM or ALONE with a replica that is not up to date (`ReplicaState.canBePrimary`);
/// - after peer loss, the VM is started or kept running only with the witness's vote;
/// - losing the vote (denied or lease expired) while running alone suspends I/O first, then stops;
/// - a peer claiming primary while we run the VM is split brain: an error, never resolved here.
public enum ModuleStateMachine {
    public static func transition(
        from status: ModuleStatus, on event: ModuleEvent
    ) throws(ModuleTransitionError) -> ModuleTransition {
        guard status.isValid else { throw illegal(status, event, "\(status) is not a valid status") }
        let replica = status.replica
        let same = ModuleTransition(status)
        func to(_ state: ModuleState, _ actions: [ModuleAction] = [], replica newReplica: ReplicaState? = nil) -> ModuleTransition {
            ModuleTransition(ModuleStatus(state, newReplica ?? replica), actions)
        }
        // Giving up a running VM: I/O first (immediate, so nothing more reaches the disk), then the domain.
        let relinquish: [ModuleAction] = [.suspendIO, .stopDomain, .demoteVolume]
        let failedReplica: ReplicaState = .inconsistent

        switch (status.state, event) {
        // MARK: STOP
        case (.stop, .startRequested): return to(.wait)
        case (.stop, .stopRequested): throw illegal(status, event, "already stopped")
        case (.stop, .peerConnected), (.stop, .peerLost), (.stop, .witnessVoteGranted),
             (.stop, .witnessVoteDenied), (.stop, .leaseExpired):
            return same  // a stopped module takes no part; the daemon-level view is elsewhere
        case (.stop, .localVolumeFailed): return to(.stop, [.reportError("local volume failed")], replica: failedReplica)
        case (.stop, _): throw illegal(status, event, "module is stopped")

        // MARK: WAIT
        case (.wait, .startRequested): throw illegal(status, event, "already started")
        case (.wait, .stopRequested): return to(.stop)
        case (.wait, .promoteRequested):
            guard replica.canBePrimary else { throw illegal(status, event, "replica is \(replica), not up to date") }
            return to(.prim, [.promoteVolume, .startDomain])
        case (.wait, .peerConnected(.primary, let peerReplica)):
            guard peerReplica.canBePrimary else {
                throw illegal(status, event, "peer claims primary with a \(peerReplica) replica")
            }
            // We are pushing a resync to the peer, so our data is newer than what it runs: diverged.
            guard replica != .syncSource else {
                throw illegal(status, event, "split brain: the peer runs the VM while we are its sync source")
            }
            return to(.second)
        case (.wait, .peerConnected(.secondary, _)):
            // The peer yielded: run the VM if our copy is good, else wait for the resync.
            return replica.canBePrimary ? to(.prim, [.promoteVolume, .startDomain]) : same
        case (.wait, .peerConnected(.waiting, let peerReplica)):
            switch (replica.canBePrimary, peerReplica.canBePrimary) {
            case (true, false): return to(.prim, [.promoteVolume, .startDomain])
            case (false, true): return to(.second)
            case (true, true): return same  // both could: the lead elects one (promoteRequested)
            case (false, false):
                return to(.wait, [.reportError("no up-to-date replica on either host; operator decision needed")])
            }
        case (.wait, .peerLost): return to(.wait, [.requestWitnessVote])
        case (.wait, .witnessVoteGranted):
            guard replica.canBePrimary else {
                return to(.wait, [.reportError("vote granted but the local replica is \(replica); not starting")])
            }
            return to(.alone, [.promoteVolume, .startDomain], replica: .upToDate)
        case (.wait, .witnessVoteDenied), (.wait, .leaseExpired): return same
        case (.wait, .resyncStarted(.source)):
            guard replica.canBePrimary else { throw illegal(status, event, "a \(replica) replica cannot be a sync source") }
            return to(.wait, replica: .syncSource)
        case (.wait, .resyncStarted(.target)): return to(.wait, replica: .syncTarget)
        case (.wait, .resyncFinished): return try finishResync(status, event)
        case (.wait, .localVolumeFailed):
            return to(.stop, [.reportError("local volume failed")], replica: failedReplica)
        case (.wait, .switchoverRequested), (.wait, .liveMigrationCompleted): throw illegal(status, event, "not running the VM")
        case (.wait, .liveMigrationArrived): throw illegal(status, event, "not the peer's secondary")
        case (.wait, .domainCrashed): throw illegal(status, event, "no domain runs here")

        // MARK: PRIM
        case (.prim, .startRequested), (.prim, .promoteRequested): throw illegal(status, event, "already primary")
        case (.prim, .stopRequested): return to(.stop, [.stopDomain, .demoteVolume])
        case (.prim, .switchoverRequested):
            // Mid-resync the peer's copy is inconsistent: handing over would leave nobody able to run it.
            guard replica == .upToDate else { throw illegal(status, event, "resync running: the peer's replica is not up to date yet") }
            return to(.second, [.stopDomain, .demoteVolume])
        case (.prim, .liveMigrationCompleted):
            // The domain left with every write replicated (protocol C) and its disks inactivated:
            // nothing to stop, and the peer's copy is as new as ours.
            guard replica == .upToDate else { throw illegal(status, event, "resync running: the peer's replica is not up to date yet") }
            return to(.second, [.demoteVolume])
        case (.prim, .liveMigrationArrived): throw illegal(status, event, "already primary")
        case (.prim, .peerConnected(.primary, _)):
            throw illegal(status, event, "split brain: the peer is primary too; suspend and ask an operator")
        case (.prim, .peerConnected): return same
        case (.prim, .peerLost):
            // Keep running only on the vote; ALONE until it is granted or denied.
            return to(.alone, [.requestWitnessVote], replica: .upToDate)
        case (.prim, .witnessVoteGranted), (.prim, .witnessVoteDenied), (.prim, .leaseExpired):
            return same  // the connected peer vouches for us; the vote matters only when it is gone
        case (.prim, .resyncStarted(.source)): return to(.prim, replica: .syncSource)
        case (.prim, .resyncStarted(.target)): throw illegal(status, event, "a primary is never a sync target")
        case (.prim, .resyncFinished): return try finishResync(status, event)
        case (.prim, .localVolumeFailed):
            return to(.stop, relinquish + [.reportError("local volume failed while primary")], replica: failedReplica)
        case (.prim, .domainCrashed): return to(.prim, [.startDomain])

        // MARK: SECOND
        case (.second, .startRequested): throw illegal(status, event, "already started")
        case (.second, .stopRequested): return to(.stop)
        case (.second, .promoteRequested):
            guard replica.canBePrimary else { throw illegal(status, event, "replica is \(replica), not up to date") }
            return to(.prim, [.promoteVolume, .startDomain])
        case (.second, .peerConnected(.primary, let peerReplica)):
            guard peerReplica.canBePrimary else {
                throw illegal(status, event, "peer claims primary with a \(peerReplica) replica")
            }
            return same
        case (.second, .peerConnected): return same  // peer demoted (switchover): wait for promoteRequested
        case (.second, .peerLost): return to(.wait, [.requestWitnessVote])
        case (.second, .witnessVoteGranted), (.second, .witnessVoteDenied), (.second, .leaseExpired):
            return same
        case (.second, .resyncStarted(.target)): return to(.second, replica: .syncTarget)
        case (.second, .resyncStarted(.source)): throw illegal(status, event, "a secondary is never a sync source")
        case (.second, .resyncFinished): return try finishResync(status, event)
        case (.second, .localVolumeFailed): return to(.stop, [.reportError("local volume failed")], replica: failedReplica)
        case (.second, .switchoverRequested), (.second, .liveMigrationCompleted): throw illegal(status, event, "not running the VM")
        case (.second, .liveMigrationArrived):
            guard replica == .upToDate else { throw illegal(status, event, "replica is \(replica), not up to date") }
            return to(.prim, [.adoptMigratedDomain])
        case (.second, .domainCrashed): throw illegal(status, event, "no domain runs here")

        // MARK: ALONE
        case (.alone, .startRequested), (.alone, .promoteRequested): throw illegal(status, event, "already running")
        case (.alone, .stopRequested): return to(.stop, [.stopDomain, .demoteVolume])
        case (.alone, .switchoverRequested), (.alone, .liveMigrationCompleted): throw illegal(status, event, "no peer to switch over to")
        case (.alone, .liveMigrationArrived): throw illegal(status, event, "already running")
        case (.alone, .peerConnected(.primary, _)):
            throw illegal(status, event, "split brain: the peer is primary too; suspend and ask an operator")
        case (.alone, .peerConnected): return to(.prim, [.startResync])
        case (.alone, .peerLost), (.alone, .witnessVoteGranted): return same
        case (.alone, .witnessVoteDenied), (.alone, .leaseExpired): return to(.wait, relinquish)
        case (.alone, .resyncStarted), (.alone, .resyncFinished): throw illegal(status, event, "no peer to resync with")
        case (.alone, .localVolumeFailed):
            return to(.stop, relinquish + [.reportError("local volume failed while alone: no good copy runs")], replica: failedReplica)
        case (.alone, .domainCrashed): return to(.alone, [.startDomain])
        }
    }

    private static func finishResync(_ status: ModuleStatus, _ event: ModuleEvent) throws(ModuleTransitionError) -> ModuleTransition {
        switch status.replica {
        case .syncSource, .syncTarget: return ModuleTransition(ModuleStatus(status.state, .upToDate))
        default: throw illegal(status, event, "no resync is running")
        }
    }

    private static func illegal(_ status: ModuleStatus, _ event: ModuleEvent, _ reason: String) -> ModuleTransitionError {
        ModuleTransitionError(status: status, event: event, reason: reason)
    }

    /// The full transition table as Markdown rows, generated by running `transition` on every valid
    /// status and every representative event. docs/state-machine.md embeds exactly this text.
    public static func markdownTable() -> String {
        var lines = ["| state | replica | event | next state | next replica | actions |", "|---|---|---|---|---|---|"]
        for status in ModuleStatus.allValid {
            for event in ModuleEvent.representatives {
                let prefix = "| \(status.state.rawValue) | \(status.replica.rawValue) | \(event) |"
                do {
                    let result = try transition(from: status, on: event)
                    let actions = result.actions.isEmpty ? "—" : result.actions.map(\.description).joined(separator: ", ")
                    let unchanged = result.status == status && result.actions.isEmpty
                    lines.append(
                        "\(prefix) \(unchanged ? "(no change)" : result.status.state.rawValue) | \(unchanged ? "" : result.status.replica.rawValue) | \(actions) |")
                } catch {
                    lines.append("\(prefix) **illegal** | | \(error.reason) |")
                }
            }
        }
        return lines.joined(separator: "\n")
    }
}
