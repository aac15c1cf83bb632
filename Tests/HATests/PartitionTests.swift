import Cluster
import Foundation
import Harness
import Libvirt
import Logging
import Testing
import Uring

#if canImport(Glibc)
import Glibc
#endif

@Suite("Partition: A cut off from B and the witness", .serialized)
struct PartitionTests {
    let logger = Logger(label: "vmha.tests.ha.partition")

    /// Issue 6, test 3. vm1 runs on A; A's links to B and to the witness go down while A's vmhad,
    /// libvirtd and QEMU keep running. A must stop its guest's I/O, B takes over with the vote,
    /// and every record A's guest saw acknowledged is on B. When the partition heals, A yields
    /// (its unacknowledged writes are discarded by the resync from B) and both are UpToDate.
    /// From both libvirtds' lifecycle event streams: vm1 never runs on both hosts at once.
    @Test(.enabled(if: hostsAvailable), .timeLimit(.minutes(8)))
    func isolatedPrimaryStopsAndPeerTakesOver() async throws {
        let guest = try TestGuest.prepare(logger: logger)
        let vmhad = try builtProduct("vmhad"), vmha = try builtProduct("vmha")
        try await TestCluster.with(.init(hosts: 3), logger: logger) { cluster in
            let ha = try HACluster(cluster: cluster, guest: guest, vmhad: vmhad, vmha: vmha)
            let (a, b) = (ha.hostA, ha.hostB)
            let serial = ha.serial
            do {
                try await ha.startAndWaitUntilRedundant()
                // Running intervals of vm1 per host, from libvirt's lifecycle events.
                let timeline = Locked<[(at: ContinuousClock.Instant, host: Int, running: Bool, event: String)]>([])
                var connections: [LibvirtConnection] = []
                var watchers: [Task<Void, Never>] = []
                for (index, host) in [a, b].enumerated() {
                    let connection = try await LibvirtConnection.open(uri: host.uri, logger: logger)
                    connections.append(connection)
                    let events = connection.events()
                    watchers.append(Task.detached {
                        for await event in events {
                            guard case .domain(let d) = event, d.domainName == "vm1" else { continue }
                            let running: Bool? = switch d.kind {
                            case .started, .resumed: true
                            case .suspended, .stopped, .crashed: false
                            default: nil
                            }
                            if let running { timeline.withLock { $0.append((.now, index, running, "\(d.kind)")) } }
                        }
                    })
                }
                defer { for watcher in watchers { watcher.cancel() } }
                let partitionedAt = ContinuousClock.now
                timeline.withLock { $0.append((partitionedAt, 0, true, "running before the partition")) }

                // A is cut off from B and from the witness; everything on A keeps running.
                for interface in a.linkInterfaces {
                    try Shell.run(["ip", "-n", a.netns, "link", "set", "dev", interface, "down"])
                }
                try await HACluster.waitUntil("vm1 ALONE on B", timeout: .seconds(30)) { ha.vm(1)?.state == "ALONE" }
                let takeover = partitionedAt.duration(to: .now)
                try await serial.waitFor("VERIFY on B", timeout: .seconds(90)) { _ in serial.verifySummaries().count == 2 }
                let lines = serial.lines()
                let secondBoot = try #require(lines.indices.filter { lines[$0].hasPrefix("VERIFY ok=") }.dropFirst().first)
                let ackedOnA = lines[..<secondBoot].compactMap { $0.hasPrefix("ACK ") ? Int($0.dropFirst(4)) : nil }.max() ?? 0
                let summary = serial.verifySummaries()[1]
                print("PARTITION: B runs vm1 \(takeover) after the cut; guest on B verified: ok=\(summary.ok) bad=\(summary.bad) last=\(summary.last); last ACK A's guest saw: \(ackedOnA)")
                #expect(summary.bad == 0)
                #expect(summary.last >= ackedOnA, "every record acknowledged on A is on B")
                let onA = try await connections[0].domain(named: "vm1").state()
                if case .running = onA { Issue.record("A still runs its guest") }

                // Heal: A yields, B resyncs it, both UpToDate; A's guest is gone.
                try a.linksUp()
                try await HACluster.waitUntil("A SECOND/upToDate, B PRIM", timeout: .seconds(60)) {
                    ha.vm(0)?.state == "SECOND" && ha.vm(0)?.replica == "upToDate" && ha.vm(1)?.state == "PRIM"
                        && ha.vm(1)?.peerReplica == "upToDate"
                }
                #expect(a.qemuPID(domain: "vm1") == nil)
                #expect(ha.status(0)?.events.contains { $0.contains("took it over while we were cut off") } == true)
                try await serial.waitForLine(containing: "ACK \(summary.last + 3)", timeout: .seconds(30))

                // Never both running: replay the event timeline.
                try await Task.sleep(for: .milliseconds(500))
                var running = [true, false]
                var overlap: [String] = []
                for entry in timeline.withLock({ $0 }).sorted(by: { $0.at < $1.at }) {
                    running[entry.host] = entry.running
                    if running[0] && running[1] { overlap.append("\(partitionedAt.duration(to: entry.at)): host \(entry.host) \(entry.event)") }
                }
                print("EVENTS: " + timeline.withLock { $0 }.sorted { $0.at < $1.at }.map { "\(partitionedAt.duration(to: $0.at)) \($0.host == 0 ? a.name : b.name) \($0.event)" }.joined(separator: "; "))
                #expect(overlap.isEmpty, "vm1 ran on both hosts: \(overlap)")
                for connection in connections { await connection.close() }
            } catch {
                for f in (try? FileManager.default.contentsOfDirectory(atPath: ha.scratch)) ?? [] where f.hasPrefix("vmhad-") {
                    try? FileManager.default.copyItem(atPath: "\(ha.scratch)/\(f)", toPath: "/tmp/notes/\(f)")
                }
                print(ha.logs())
                await ha.stopAll()
                throw error
            }
            await ha.stopAll()
        }
    }
}
