import Cluster
import Foundation
import Harness
import Logging
import Testing

@Suite("vmha add / vmha remove on a running cluster", .serialized)
struct MembershipTests {
    let logger = Logger(label: "vmha.tests.ha.membership")

    /// vm1 runs on A. Bad `vmha add`s are refused with a clear line and change nothing; vm2 (an idle
    /// guest preferring B) is added on both hosts and starts on B with A's replica UpToDate; it is in
    /// the configuration file (a restarted vmhad still has it); `vmha remove` is refused where it
    /// runs without `--stop`, works on the secondary, and with `--stop` shuts the guest down; the
    /// images stay; vm1 keeps running and writing throughout.
    @Test(.enabled(if: hostsAvailable), .timeLimit(.minutes(8)))
    func addAndRemoveAVMAtRuntime() async throws {
        try await HACluster.test(logger: logger) { ha, watch in
            let (a, b) = (ha.hostA, ha.hostB)
            let scratch = ha.scratch
            func vm2(_ host: Int) -> VMStatusReport? { ha.status(host)?.vms.first { $0.name == "vm2" } }
            func config(_ host: Int) throws -> String { try String(contentsOfFile: ha.configPaths[host], encoding: .utf8) }
            try await ha.startAndWaitUntilRedundant()
            let domain = GuestDomain(name: "vm2", workload: .idle, disks: [.file(path: "\(scratch)/vm2-original.img")], serialLog: "\(scratch)/vm2.serial.log")
            try domain.xml(guest: ha.guest).write(toFile: "\(scratch)/vm2.xml", atomically: true, encoding: .utf8)
            func disk(_ host: Int) -> String {
                let dir = "\(scratch)/\(ha.cluster.hosts[host].name)"
                return "vda:\(dir)/vm2.img:\(dir)/vm2.meta"
            }
            for host in 0..<2 { try QemuNBD.createImage(at: "\(scratch)/\(ha.cluster.hosts[host].name)/vm2.img", bytes: 16 << 20) }

            // Refused, each with one clear line; the file is untouched and no module appears.
            let original = try config(0)
            let refusals: [([String], String)] = [
                (["add", "vm2", "--domain-xml", "\(scratch)/vm2.xml", "--disk", "vda:\(scratch)/missing.img:\(scratch)/missing.meta"], "missing.img"),
                (["add", "vm2", "--domain-xml", "\(scratch)/vm2.xml", "--disk", "vdz:\(scratch)/\(a.name)/vm2.img:\(scratch)/\(a.name)/vm2.meta"], "vdz"),
                (["add", "vm1", "--domain-xml", "\(scratch)/vm2.xml", "--disk", disk(0)], "duplicate VM name"),
                (["add", "vm2", "--domain-xml", "\(scratch)/vm2.xml", "--disk", disk(0), "--preferred-host", "hostZ"], "hostZ"),
                (["add", "vm2", "--domain-xml", "\(scratch)/nope.xml", "--disk", disk(0)], "nope.xml"),
            ]
            for (arguments, mention) in refusals {
                let result = try ha.vmhaCommand(0, arguments)
                print("REFUSED: \(result.output)", terminator: "")
                #expect(result.status == 1 && result.output.contains(mention), "\(arguments): \(result.output)")
                #expect(result.output.split(separator: "\n").count == 1)
            }
            #expect(try config(0) == original)
            #expect(ha.status(0)?.vms.map(\.name) == ["vm1"])

            // Added on both hosts: starts on B (preferred), A becomes its UpToDate secondary.
            for host in 0..<2 {
                let result = try ha.vmhaCommand(host, ["add", "vm2", "--domain-xml", "\(scratch)/vm2.xml", "--disk", disk(host), "--preferred-host", b.name, "--priority", "5"])
                #expect(result.status == 0, "\(result.output)")
            }
            try await HACluster.waitUntil("vm2 PRIM on B, A UpToDate", timeout: .seconds(90)) {
                vm2(1)?.state == "PRIM" && vm2(0)?.state == "SECOND" && vm2(0)?.replica == "upToDate"
            }
            #expect(b.qemuPID(domain: "vm2") != nil && a.qemuPID(domain: "vm2") == nil)
            #expect(try ClusterConfiguration.parse(try config(0)).vms.last?.priority == 5)
            #expect(try config(0).hasPrefix(original), "the operator's file is kept as written, the VM appended")

            // In the file: a restarted vmhad has it again.
            await ha.daemons[0]?.stop()
            try ha.startDaemon(0)
            try await HACluster.waitUntil("vm2 SECOND on A after A's restart", timeout: .seconds(30)) { vm2(0)?.state == "SECOND" }

            // Remove: refused where it runs; fine on the secondary; with --stop where it runs.
            let refused = try ha.vmhaCommand(1, ["remove", "vm2"])
            #expect(refused.status == 1 && refused.output.contains("--stop"), "\(refused.output)")
            #expect(b.qemuPID(domain: "vm2") != nil)
            #expect(try ha.vmhaCommand(0, ["remove", "vm2"]).status == 0)
            #expect(try config(0) == (original.hasSuffix("\n") ? original : original + "\n"), "the file as it was")
            #expect(ha.status(0)?.vms.map(\.name) == ["vm1"])
            let stopped = try ha.vmhaCommand(1, ["remove", "vm2", "--stop"])
            #expect(stopped.status == 0, "\(stopped.output)")
            try await HACluster.waitUntil("vm2's guest gone from B", timeout: .seconds(30)) { b.qemuPID(domain: "vm2") == nil }
            #expect(ha.status(1)?.vms.map(\.name) == ["vm1"])
            #expect(!(try config(1)).contains("vm2"))
            for host in 0..<2 {
                #expect(FileManager.default.fileExists(atPath: "\(scratch)/\(ha.cluster.hosts[host].name)/vm2.img"), "images are kept")
            }

            // vm1 was never disturbed.
            let last = try #require(ha.serial.lastACK())
            try await ha.serial.waitForLine(containing: "ACK \(last + 3)", timeout: .seconds(30))
            #expect(ha.serial.verifySummaries().count == 1, "vm1 was not rebooted")
            #expect(ha.vm(0)?.state == "PRIM")
        }
    }
}
