import Cluster
import Foundation
import Harness
import Libvirt
import Logging
import Testing

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
        try await HACluster.test(logger: logger) { ha, watch in
            let a = ha.hostA
            let serial = ha.serial
            try await ha.startAndWaitUntilRedundant()
            let partitionedAt = ContinuousClock.now

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
            #expect(a.qemuPID(domain: "vm1") != nil, "A's QEMU still exists (paused), nothing was killed")

            // Heal: A yields, B resyncs it, both UpToDate; A's guest is gone.
            try a.linksUp()
            try await HACluster.waitUntil("A SECOND/upToDate, B PRIM", timeout: .seconds(60)) {
                ha.vm(0)?.state == "SECOND" && ha.vm(0)?.replica == "upToDate" && ha.vm(1)?.state == "PRIM"
                    && ha.vm(1)?.peerReplica == "upToDate"
            }
            #expect(a.qemuPID(domain: "vm1") == nil)
            #expect(ha.status(0)?.events.contains { $0.contains("took it over while we were cut off") } == true)
            try await serial.waitForLine(containing: "ACK \(summary.last + 3)", timeout: .seconds(30))

        }
    }
}
