import Cluster
import Foundation
import Harness
import Prometheus
import Testing
import Volume

@testable import HAService

/// The process's metrics backend, bootstrapped once (swift-metrics allows one per process).
enum TestMetrics {
    static let registry = MetricsSetup.bootstrap()
}

/// vmhad's `/metrics`, scraped over HTTP and checked by Prometheus's own `promtool`.
@Suite("Prometheus metrics", .serialized)
struct MetricsTests {
    /// Every metric docs/observability.md names, in a scrape `promtool check metrics` accepts,
    /// with values that follow the node (the VM runs here, its guest wrote).
    @Test(.timeLimit(.minutes(1))) func aScrapeHasEveryDocumentedMetricAndPromtoolAcceptsIt() async throws {
        let registry = TestMetrics.registry  // before the node opens its volumes
        let (fixture, node, log) = try await NodeFixture.oneVMNode()
        defer { fixture.remove() }
        await node.feed(named: "vm01", .peerLost)
        await node.feed(named: "vm01", .witnessVoteGranted)  // ALONE: its volume is primary
        try await node.writeForTest(vm: "vm01", bytes: 8192)

        let (ports, port) = AsyncStream<Int>.makeStream()
        let service = MetricsService(
            host: "127.0.0.1", port: 0, registry: registry, refresh: { await node.refreshMetrics() }, logger: log.logger,
            listening: { port.yield($0) })
        let serving = Task { try await service.run() }
        defer { serving.cancel() }
        var iterator = ports.makeAsyncIterator()
        let bound = try #require(await iterator.next())

        let scrape = try await run(["/usr/bin/curl", "-sS", "-D", "-", "http://127.0.0.1:\(bound)/metrics"])
        #expect(scrape.status == 0, "\(scrape.output)")
        #expect(scrape.output.contains("Content-Type: text/plain; version=0.0.4"))
        let body = String(scrape.output[scrape.output.range(of: "\r\n\r\n")!.upperBound...])
        #expect(Set(Self.documented) == Set(MetricsSetup.catalogue.keys), "the catalogue is the documented list")
        for name in Self.documented {
            #expect(body.contains("\n\(name)") || body.contains("\n# TYPE \(name) "), "\(name) missing from the scrape")
        }
        #expect(body.contains(#"vmha_vm_running{vm="vm01",host="hostA"} 1.0"#), "\(body)")
        #expect(body.contains(#"vmha_vm_state{vm="vm01",host="hostA",state="ALONE"} 1.0"#))
        #expect(body.contains(#"vmha_volume_writes_total{volume="vm01-disk0",vm="vm01",host="hostA"} 1"#))
        #expect(body.contains(#"vmha_volume_written_bytes_total{volume="vm01-disk0",vm="vm01",host="hostA"} 8192"#))
        #expect(body.contains(#"vmha_volume_out_of_sync_bytes{volume="vm01-disk0",vm="vm01",host="hostA"} 65536.0"#), "written without a peer: one 64 KiB grain dirty")
        #expect(body.contains(#"vmha_volume_link_state{volume="vm01-disk0",vm="vm01",host="hostA",state="standalone"} 1.0"#))

        let file = fixture.directory + "/scrape.txt"
        try body.write(toFile: file, atomically: true, encoding: .utf8)
        let promtool = try await run(["/bin/sh", "-c", "promtool check metrics < \(file)"])
        #expect(promtool.status == 0, "promtool: \(promtool.output)")
        await node.stopAndShutDown()
    }

    /// The example alert rules load in Prometheus (`promtool check rules`), and they and the
    /// example Grafana dashboard name only metrics vmhad exports.
    @Test func theExampleAlertsAndDashboardUseExportedMetrics() async throws {
        let monitoring = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/monitoring").path
        let rules = try await run(["/usr/bin/promtool", "check", "rules", "\(monitoring)/vmha-alerts.yml"])
        #expect(rules.status == 0 && rules.output.contains("SUCCESS"), "\(rules.output)")
        let dashboard = try String(contentsOfFile: "\(monitoring)/vmha-dashboard.json", encoding: .utf8)
        #expect((try? JSONSerialization.jsonObject(with: Data(dashboard.utf8))) != nil, "the dashboard is JSON")
        let alerts = try String(contentsOfFile: "\(monitoring)/vmha-alerts.yml", encoding: .utf8)
        let used = Set((alerts + dashboard).matches(of: /vmha_[a-z_]+/).map { String($0.output) })
            .map { $0.replacingOccurrences(of: "_bucket", with: "") }
        #expect(!used.isEmpty)
        for name in used { #expect(MetricsSetup.catalogue[name] != nil, "\(name) is not a metric vmhad exports") }
    }

    /// The names docs/observability.md documents (and issue 13 asks for).
    static let documented = [
        "vmha_vm_check_health", "vmha_host_check_health",
        "vmha_volume_out_of_sync_bytes", "vmha_volume_resync_done_bytes", "vmha_volume_resync_total_bytes",
        "vmha_volume_resync_bytes_per_second", "vmha_volume_link_state", "vmha_volume_role", "vmha_volume_writes_total",
        "vmha_volume_written_bytes_total", "vmha_volume_write_latency_seconds", "vmha_volume_peer_ack_latency_seconds",
        "vmha_volume_activity_log_writes_total", "vmha_volume_bitmap_writes_total", "vmha_vm_running", "vmha_vm_state",
        "vmha_vm_failovers_total", "vmha_vm_restarts_total", "vmha_peer_alive", "vmha_heartbeat_network_up",
        "vmha_witness_vote_held", "vmha_fenced", "vmha_events_total",
    ]

    func run(_ arguments: [String]) async throws -> (status: Int32, output: String) { try await HACluster.runToolOffPool(arguments) }
}

extension ClusterNode {
    /// A guest write through the volume's own path (tests only).
    func writeForTest(vm: String, bytes: Int) async throws {
        try await modules[vm]!.volumes[0].writeForTest(0x5a, count: bytes)
    }
}

extension LocalVolume {
    /// Isolated to the volume, so the buffer never crosses an isolation boundary.
    func writeForTest(_ byte: UInt8, count: Int) async throws(VolumeError) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 4096)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: byte)
        try await write(UnsafeRawBufferPointer(buffer), at: 0, fua: false)
    }
}
