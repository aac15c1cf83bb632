import Cluster
import Libvirt
import ReplicationPolicy
import Volume

/// Live migration (`vmha migrate VM --to HOST --live`, docs/ha.md "Live migration").
///
/// QEMU's destination opens its disks inactive and writes nothing until the source has stopped
/// the guest and flushed and inactivated its disks. So the target exports its up-to-date
/// secondary with guest changes *held* (not applied, not answered) while the replication keeps
/// applying the source's writes; after libvirt reports success the source demotes (every write
/// it answered is on the target: protocol C) and the target promotes under the running domain
/// and releases the held changes. Only one side ever answers a guest write.
extension ClusterNode {
    /// Runner side. Returns the problem, or nil when the domain runs on the peer and this side is
    /// SECOND. Runs in the control loop.
    func migrateLive(_ module: VMModule) async -> String? {
        let name = module.config.name
        guard module.status.state == .prim, module.status.replica == .upToDate else {
            return "\(name) is \(module.status) on \(me.name), not PRIM/upToDate"
        }
        guard await waitForPeerUpToDate(name, timeout: .seconds(10)), peerSummaries[name]?.state == .second else {
            return "the replica of \(name) on \(peer.name) is not an UpToDate secondary"
        }
        guard let domain = await localDomain(module) else { return "no domain of \(name) on \(me.name)" }

        module.liveReply = nil
        let deadline = ContinuousClock.now + .seconds(5)
        while module.liveReply == nil && ContinuousClock.now < deadline {
            sendPeerCommand(.prepareLive, vm: name)
            // Timer: the request is a datagram, resent every 200 ms until the answer (an event) comes.
            await nextChange(before: min(deadline, .now + .milliseconds(200)))
        }
        guard let reply = module.liveReply else { return "\(peer.name) did not answer the live migration request for \(name)" }
        guard reply.kind == .livePrepared else { return "\(peer.name) refused the live migration of \(name): \(reply.detail)" }

        let started = ContinuousClock.now
        do {
            // The same domain, its disks at the target's sockets (`reply.detail` is its socket directory).
            var xml = try await domain.xmlDescription(migratable: true)
            for volume in module.volumeNames {
                xml = xml.replacingOccurrences(of: socketPath(volume), with: "\(reply.detail)/\(volume).sock")
            }
            try await domain.migrate(.init(
                destinationURI: peer.migrationURI ?? peer.libvirtURI, migrateURI: "tcp://\(peer.replicationAddress.host)", destinationXML: xml))
        } catch {
            for _ in 0..<3 { sendPeerCommand(.abortLive, vm: name) }
            let reason = "\(error)".split(whereSeparator: \.isNewline).joined(separator: " ")
            return "live migration of \(name) to \(peer.name) failed: \(reason); it keeps running on \(me.name)"
        }
        let migrated = started.duration(to: .now)
        await Failpoint.liveMigrationMoved.pause(logger: logger)
        await feed(module, .liveMigrationCompleted)
        guard module.status.state == .second else {
            return "\(name) moved to \(peer.name) but did not demote here: \(module.lastError ?? "state \(module.status)")"
        }
        // Until its heartbeat says PRIM: the guest's writes wait for this datagram.
        let promoteBy = ContinuousClock.now + .seconds(10)
        while peerSummaries[name]?.state != .prim && ContinuousClock.now < promoteBy {
            sendPeerCommand(.liveArrived, vm: name)
            // Timer: a datagram, resent every 100 ms until the peer's heartbeat (an event) says PRIM.
            await nextChange(before: min(promoteBy, .now + .milliseconds(100)))
        }
        record("\(name): live migration to \(peer.name): domain moved in \(migrated), demoted after \(started.duration(to: .now))")
        return nil
    }

    /// Target side (`prepareLive`): exports the secondary for the incoming domain, guest changes
    /// held; answers `livePrepared` with this host's socket directory, or `liveRefused`. Repeated
    /// requests get the same answer.
    func prepareIncomingMigration(_ module: VMModule) async {
        let name = module.config.name
        if module.incomingExports == nil {
            guard module.status.state == .second, module.status.replica == .upToDate, module.role == .secondary else {
                sendPeerCommand(.liveRefused, vm: name, detail: "\(name) is \(module.status) on \(me.name), not SECOND/upToDate")
                return
            }
            let servers: [ListeningExport]
            do {
                servers = try listenNBD(module)
            } catch {
                sendPeerCommand(.liveRefused, vm: name, detail: "cannot export \(name) on \(me.name): \(error)")
                return
            }
            for volume in module.volumes { await volume.setGuestChangeGate(.held) }
            let ring = self.ring
            module.incomingExports = Task(executorPreference: ring) {
                await withDiscardingTaskGroup { group in
                    for export in servers {
                        group.addTask(executorPreference: ring) { await export.server.serve(listener: export.listener) }
                    }
                }
            }
            record("\(name): exported for an incoming live migration from \(peer.name); guest writes held until it arrives")
        }
        sendPeerCommand(.livePrepared, vm: name, detail: config.nbd.socketDirectory)
    }

    /// The migration failed (or this side takes the VM over otherwise): held guest changes fail,
    /// never applied nor answered, and the exports close.
    func closeIncomingExports(_ module: VMModule) async {
        guard let exports = module.incomingExports else { return }
        module.incomingExports = nil
        // Refused first: connections waiting at the gate must end before the exports can.
        for volume in module.volumes { await volume.setGuestChangeGate(.refused) }
        exports.cancel()
        await exports.value
        record("\(module.config.name): exports for the incoming live migration closed")
    }

    /// `adoptMigratedDomain`: the source has demoted; promote in place under the exports the
    /// domain uses, replicate to the peer, then answer the held guest changes.
    func adoptMigratedDomain(_ module: VMModule) async throws {
        guard let exports = module.incomingExports else { throw VMHAClusterError("no incoming live migration of \(module.config.name)") }
        let started = ContinuousClock.now
        module.incomingExports = nil
        module.role = .primary
        await withdrawFromReplicaServer(module)  // the peer is no longer primary
        for volume in module.volumes {
            try await volume.promote()
            await volume.setUnreplicatedWritePolicy(writePolicy)
        }
        startPrimaryTask(module, exports: [], migrated: exports)
        // Released changes should find the replication attached: one that starts while the link
        // attaches can miss both the peer and the connect's resync, and would then wait (policy
        // `hold`) for the next resync. Without the peer within 10 s they are released anyway.
        // (The link's decision is an event: `PrimaryReplication` attaches before announcing it.)
        let name = module.config.name
        _ = await waitUntil(.now + .seconds(10)) { node in
            for volume in node.modules[name]?.volumes ?? [] where !(await volume.isReplicating) { return false }
            return true
        }
        var held = 0
        for volume in module.volumes {
            held += await volume.heldWriteCount
            await volume.setGuestChangeGate(.open)
        }
        record("\(module.config.name): arrived by live migration from \(peer.name); primary here after \(started.duration(to: .now)), \(held) held guest writes released")
    }
}
