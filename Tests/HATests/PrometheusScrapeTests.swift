import Cluster
import Foundation
import Harness
import Logging
import Testing

/// A real Prometheus server scrapes both vmhad of a test cluster; its HTTP API is asked for a
/// value that changes (docs/observability.md).
@Suite("Prometheus scrapes a cluster", .serialized)
struct PrometheusScrapeTests {
    let logger = Logger(label: "vmha.tests.ha.prometheus")
    static let metricsPort = 9470

    /// While B's vmhad is away, the guest on A writes: A's out-of-sync bytes rise; once B is
    /// back and resynced they return to 0 — as Prometheus recorded them, scraping every second.
    @Test(.enabled(if: hostsAvailable), .timeLimit(.minutes(8)))
    func outOfSyncBytesRiseWhileThePeerIsAwayAndReturnToZero() async throws {
        try await HACluster.test(logger: logger, make: {
            try HACluster(cluster: $0, guest: $1, vmhad: $2, vmha: $3, metricsPort: Self.metricsPort)
        }) { ha, _ in
            try await ha.startAndWaitUntilRedundant()
            let c = ha.cluster.hosts[2]
            let targets = [0, 1].map { "\"\(ha.cluster.address(of: $0, toward: 2)):\(Self.metricsPort)\"" }.joined(separator: ", ")
            let directory = "\(ha.scratch)/prometheus"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try """
                global:
                  scrape_interval: 1s
                scrape_configs:
                  - job_name: vmha
                    static_configs:
                      - targets: [\(targets)]
                """.write(toFile: "\(directory)/prometheus.yml", atomically: true, encoding: .utf8)
            // In the witness's namespace: it reaches both hosts; its API is on its own loopback.
            let prometheus = try NamespacedDaemon(
                namespace: c.netns, executable: "/usr/bin/prometheus",
                arguments: [
                    "--config.file=\(directory)/prometheus.yml", "--storage.tsdb.path=\(directory)/data",
                    "--web.listen-address=127.0.0.1:9090",
                ],
                logPath: "\(directory)/prometheus.log")
            defer { prometheus.kill() }

            /// The query's value at A (nil: no answer or no sample yet).
            func value(_ query: String) -> Double? {
                let url = "http://127.0.0.1:9090/api/v1/query?query=" + query.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
                guard let result = try? HACluster.runTool(["/usr/sbin/ip", "netns", "exec", c.netns, "/usr/bin/curl", "-sS", url]),
                    result.status == 0,
                    let json = try? JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any],
                    let data = json["data"] as? [String: Any], let results = data["result"] as? [[String: Any]],
                    let first = results.first, let sample = first["value"] as? [Any], let text = sample.last as? String
                else { return nil }
                return Double(text)
            }
            let outOfSync = #"vmha_volume_out_of_sync_bytes{host="hostA",volume="vm1-disk0"}"#
            try await HACluster.waitUntil("Prometheus scraped A: in sync", timeout: .seconds(60)) { value(outOfSync) == 0 }
            #expect(value(#"vmha_peer_alive{host="hostA"}"#) == 1)
            #expect(value(#"vmha_vm_running{host="hostA",vm="vm1"}"#) == 1)

            // B's vmhad goes away (its restart grace keeps A from failing over); the guest writes on.
            await ha.daemons[1]?.stop()
            try await HACluster.waitUntil("out-of-sync bytes > 0 in Prometheus", timeout: .seconds(60)) { (value(outOfSync) ?? 0) > 0 }
            let peak = value("max_over_time(\(outOfSync)[5m])") ?? 0
            print("PROMETHEUS: A out of sync by \(Int(peak)) bytes while B's vmhad was away")

            try ha.startDaemon(1)
            try await HACluster.waitUntil("B back and UpToDate", timeout: .seconds(90)) {
                ha.vm(1)?.state == "SECOND" && ha.vm(1)?.replica == "upToDate"
            }
            try await HACluster.waitUntil("out-of-sync bytes back to 0 in Prometheus", timeout: .seconds(60)) { value(outOfSync) == 0 }
            #expect((value("max_over_time(\(outOfSync)[5m])") ?? 0) > 0, "the rise is in Prometheus's history")
            #expect((value(#"increase(vmha_volume_writes_total{host="hostA",volume="vm1-disk0"}[5m])"#) ?? 0) > 0)
            #expect(value(#"vmha_volume_link_state{host="hostA",volume="vm1-disk0",state="connected"}"#) == 1)
        }
    }
}
