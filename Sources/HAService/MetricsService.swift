import Hummingbird
import Logging
import CoreMetrics
import Metrics
import Prometheus
import ServiceLifecycle

/// `GET /metrics` in Prometheus's text format (docs/observability.md): the registry swift-metrics
/// reports into (`MetricsSetup.bootstrap`), with the node's gauges refreshed on each scrape, so
/// that a scrape reads the node's state as it is then, never a stale copy.
public struct MetricsService: Service {
    let application: Application<RouterResponder<BasicRequestContext>>

    /// - Parameter refresh: sets the gauges that mirror state (nil in flag mode: the data path's
    ///   counters only).
    /// - Parameter listening: told the bound port once the server listens (port 0 picks one).
    public init(
        host: String, port: Int, registry: PrometheusCollectorRegistry, refresh: (@Sendable () async -> Void)?, logger: Logger,
        listening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) {
        let router = Router()
        router.get("metrics") { _, _ -> Response in
            await refresh?()
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
        }
        application = Application(
            router: router, configuration: .init(address: .hostname(host, port: port), serverName: "vmhad"),
            onServerRunning: { channel in
                let bound = channel.localAddress?.port ?? port
                logger.info("metrics listening", metadata: ["address": "http://\(host):\(bound)/metrics"])
                await listening(bound)
            },
            logger: logger)
    }

    public func run() async throws {
        try await application.runService(gracefulShutdownSignals: [])
    }
}

/// The process's one metrics backend: swift-metrics reports into a Prometheus registry, each
/// metric with its help text (`catalogue`, which docs/observability.md lists and
/// `MetricsTests` checks a scrape against). Bootstrapped once, before any volume is opened (a
/// metric made earlier goes to the no-op backend for good).
public enum MetricsSetup {
    /// Every metric vmhad exports, and what it means.
    public static let catalogue: [String: String] = [
        "vmha_volume_out_of_sync_bytes": "Bytes of the volume the peer's copy lacks (dirty in the bitmap).",
        "vmha_volume_resync_done_bytes": "Bytes the running resync has sent (0 when none runs).",
        "vmha_volume_resync_total_bytes": "Bytes the running resync covers (0 when none runs).",
        "vmha_volume_resync_bytes_per_second": "Rate of the running resync at its last progress event.",
        "vmha_volume_link_state": "1 for the replication link's current state, 0 for the others.",
        "vmha_volume_role": "1 for the volume's current role on this host (primary, secondary).",
        "vmha_volume_writes_total": "Guest writes completed (NBD WRITE).",
        "vmha_volume_written_bytes_total": "Bytes of guest writes completed.",
        "vmha_volume_write_latency_seconds": "Guest write completion time, local disk and peer (protocol C) together.",
        "vmha_volume_peer_ack_latency_seconds": "From handing a write to the link to the peer's acknowledgement.",
        "vmha_volume_activity_log_writes_total": "Activity-log transactions written.",
        "vmha_volume_bitmap_writes_total": "Dirty-bitmap blocks written to the metadata file.",
        "vmha_vm_running": "1 where the VM runs (PRIM or ALONE on this host).",
        "vmha_vm_state": "1 for the VM module's current state on this host.",
        "vmha_vm_check_health": "1 for a VM check's current health (starting, healthy, failing, failed, flapping) where the VM runs.",
        "vmha_vm_failovers_total": "Times this host started the VM in a failover.",
        "vmha_vm_restarts_total": "Times this host restarted the VM's domain (crash, failed start).",
        "vmha_peer_alive": "1 while the peer's heartbeats arrive.",
        "vmha_heartbeat_network_up": "1 while the peer's heartbeats arrive on this network.",
        "vmha_witness_vote_held": "1 while this host holds the witness's vote.",
        "vmha_host_check_health": "1 for a host check's current health on this host (`[[hosts.checks]]`): starting, healthy, failing, failed, flapping.",
        "vmha_fenced": "1 while this host has paused its domains (no echo from the peer, no vote).",
        "vmha_events_total": "Events the node published, by kind (vmha events).",
    ]

    /// Latency buckets for the data path: 50 µs to 10 s.
    static let latencyBuckets: [Duration] = [
        .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2),
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
        .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(10),
    ]

    public static func bootstrap() -> PrometheusCollectorRegistry {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(Factory(registry: registry))
        return registry
    }

    /// `PrometheusMetricsFactory` without help texts fails `promtool check metrics`; this one
    /// gives each metric its catalogue entry.
    struct Factory: MetricsFactory {
        let registry: PrometheusCollectorRegistry

        func help(_ label: String) -> String { MetricsSetup.catalogue[label] ?? label }

        func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
            registry.makeCounter(name: label, labels: dimensions, help: help(label))
        }

        func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
            registry.makeCounter(name: label, labels: dimensions, help: help(label))
        }

        func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
            guard aggregate else { return registry.makeGauge(name: label, labels: dimensions, help: help(label)) }
            return registry.makeValueHistogram(name: label, labels: dimensions, buckets: [0.001, 0.01, 0.1, 1, 10], help: help(label))
        }

        func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
            registry.makeGauge(name: label, labels: dimensions, help: help(label))
        }

        func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
            registry.makeDurationHistogram(name: label, labels: dimensions, buckets: MetricsSetup.latencyBuckets, help: help(label))
        }

        func destroyCounter(_ handler: any CounterHandler) {
            if let counter = handler as? Prometheus.Counter { registry.unregisterCounter(counter) }
        }

        func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {
            if let counter = handler as? Prometheus.Counter { registry.unregisterCounter(counter) }
        }

        func destroyRecorder(_ handler: any RecorderHandler) {
            if let gauge = handler as? Prometheus.Gauge { registry.unregisterGauge(gauge) }
            if let histogram = handler as? Histogram<Double> { registry.unregisterValueHistogram(histogram) }
        }

        func destroyMeter(_ handler: any MeterHandler) {
            if let gauge = handler as? Prometheus.Gauge { registry.unregisterGauge(gauge) }
        }

        func destroyTimer(_ handler: any TimerHandler) {
            if let histogram = handler as? Histogram<Duration> { registry.unregisterDurationHistogram(histogram) }
        }
    }
}
