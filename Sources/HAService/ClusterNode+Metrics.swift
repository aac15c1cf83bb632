import Cluster
import Metrics
import Replication
import Volume

/// The gauges that mirror the node's state, set from it at each scrape (docs/observability.md
/// lists every name). Counters (failovers, restarts, events) are counted where they happen.
extension ClusterNode {
    public func refreshMetrics() async {
        let host = ("host", me.name)
        Gauge(label: "vmha_peer_alive", dimensions: [host]).record(peerState == .alive ? 1 : 0)
        for (index, up) in networksUp.enumerated() {
            Gauge(label: "vmha_heartbeat_network_up", dimensions: [host, ("network", "\(index)")]).record(up ? 1 : 0)
        }
        Gauge(label: "vmha_witness_vote_held", dimensions: [host]).record(lease.holdsLease(at: monotonicNow()) ? 1 : 0)
        Gauge(label: "vmha_fenced", dimensions: [host]).record(fenced ? 1 : 0)
        for (check, run) in zip(me.checks, hostChecks) {
            for health in CheckHealth.allCases {
                Gauge(label: "vmha_host_check_health", dimensions: [host, ("check", check.name), ("health", health.rawValue)]).record(run.status.health == health ? 1 : 0)
            }
        }
        for name in order {
            guard let module = modules[name] else { continue }
            let vm = ("vm", name)
            let runs = [.prim, .alone].contains(module.status.state)
            Gauge(label: "vmha_vm_running", dimensions: [vm, host]).record(runs ? 1 : 0)
            for state in ModuleState.allCases {
                Gauge(label: "vmha_vm_state", dimensions: [vm, host, ("state", state.rawValue)]).record(module.status.state == state ? 1 : 0)
            }
            // Where the VM does not run its checks do not run: every health reads 0 there.
            for (index, check) in module.config.checks.enumerated() {
                for health in CheckHealth.allCases {
                    let current = runs && module.checks[index].status.health == health
                    Gauge(label: "vmha_vm_check_health", dimensions: [vm, host, ("check", check.name), ("health", health.rawValue)]).record(current ? 1 : 0)
                }
            }
            for (index, volumeName) in module.volumeNames.enumerated() {
                let labels = [("volume", volumeName), vm, host]
                let status = linkStatus(module, volume: index)
                let link = status?.link ?? .standalone
                for state in ReplicationStatus.Link.allCases {
                    Gauge(label: "vmha_volume_link_state", dimensions: labels + [("state", state.rawValue)]).record(link == state ? 1 : 0)
                }
                for role in ["primary", "secondary"] {
                    let current = module.role == .primary ? "primary" : module.role == .secondary ? "secondary" : "closed"
                    Gauge(label: "vmha_volume_role", dimensions: labels + [("role", role)]).record(current == role ? 1 : 0)
                }
                let dirty = index < module.volumes.count ? await module.volumes[index].dirtyBytes : 0
                Gauge(label: "vmha_volume_out_of_sync_bytes", dimensions: labels).record(dirty)
                let resyncing = link == .syncSource
                Gauge(label: "vmha_volume_resync_total_bytes", dimensions: labels).record(resyncing ? status?.resyncTotalBytes ?? 0 : 0)
                Gauge(label: "vmha_volume_resync_done_bytes", dimensions: labels).record(resyncing ? status?.resyncDoneBytes ?? 0 : 0)
                Gauge(label: "vmha_volume_resync_bytes_per_second", dimensions: labels).record(resyncing ? resyncRates[volumeName] ?? 0 : 0)
            }
        }
    }
}
