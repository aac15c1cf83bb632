import Cluster
import Foundation
import Harness
import Logging
import Testing
import Volume

/// `vmha support-bundle` from a running two-host cluster (docs/observability.md): both hosts'
/// parts, the peer's over the authenticated peer link; the cluster key nowhere in it; an
/// unreachable or wrongly keyed peer is a note in the archive, not a failure.
@Suite("Support bundle", .serialized)
struct SupportBundleTests {
    let logger = Logger(label: "vmha.tests.ha.support-bundle")

    /// Runs `vmha support-bundle` in host A's namespace and unpacks it; returns the unpacked root
    /// and the command's output.
    func bundle(_ ha: HACluster, config: String, name: String) throws -> (root: String, output: String) {
        let archive = "\(ha.scratch)/\(name).tar.gz"
        let result = try HACluster.runTool([
            "/usr/sbin/ip", "netns", "exec", ha.hostA.netns, ha.vmha, "support-bundle", "--config", config, "--host", ha.hostA.name,
            "-o", archive, "--peer-timeout", "20",
        ])
        guard result.status == 0 else { throw HAClusterError("vmha support-bundle exited \(result.status): \(result.output)") }
        let unpacked = "\(ha.scratch)/\(name)"
        try FileManager.default.createDirectory(atPath: unpacked, withIntermediateDirectories: true)
        let tar = try HACluster.runTool(["/usr/bin/tar", "-xzf", archive, "-C", unpacked])
        guard tar.status == 0 else { throw HAClusterError("tar: \(tar.output)") }
        let top = try FileManager.default.contentsOfDirectory(atPath: unpacked)
        guard top.count == 1, let only = top.first, only.hasPrefix("vmha-support-hostA-") else { throw HAClusterError("archive top level: \(top)") }
        return ("\(unpacked)/\(only)", result.output)
    }

    func files(under root: String) -> [String] {
        (FileManager.default.enumerator(atPath: root)?.allObjects as? [String] ?? []).filter {
            var directory: ObjCBool = false
            return FileManager.default.fileExists(atPath: "\(root)/\($0)", isDirectory: &directory) && !directory.boolValue
        }.sorted()
    }

    func text(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

    @Test(.enabled(if: hostsAvailable), .timeLimit(.minutes(8)))
    func aBundleHoldsBothHostsAndNotTheKey() async throws {
        try await HACluster.test(logger: logger) { ha, _ in
            try await ha.startAndWaitUntilRedundant()
            let key = [UInt8](try Data(contentsOf: URL(fileURLWithPath: ha.key)))

            let (root, output) = try bundle(ha, config: ha.configPaths[0], name: "both")
            #expect(output.contains("hostB: part received over the peer link"), "\(output)")
            let all = files(under: root)
            for host in ["hostA", "hostB"] {
                for file in ["config.toml", "status.json", "witness.txt", "events.jsonl", "vmhad.log", "domains/vm1.xml", "domains/vm1.live.xml",
                             "volumes/vm1-disk0.txt", "volumes/vm1-disk0.json", "versions.txt", "network.txt"] {
                    #expect(all.contains("\(host)/\(file)"), "\(host)/\(file) missing; the bundle has \(all)")
                }
                let status = try JSONDecoder().decode(ClusterStatusReport.self, from: Data(contentsOf: URL(fileURLWithPath: "\(root)/\(host)/status.json")))
                #expect(status.host == host)
                #expect(status.vms.first?.name == "vm1")
                // Each host's own view: the metadata summary of its own replica.
                let inspection = try JSONDecoder().decode(
                    MetadataInspection.self, from: Data(contentsOf: URL(fileURLWithPath: "\(root)/\(host)/volumes/vm1-disk0.json")))
                #expect(inspection.role == (host == "hostA" ? "primary" : "secondary"))
                #expect(text("\(root)/\(host)/versions.txt").contains(VMHAVersion.current))
                #expect(text("\(root)/\(host)/versions.txt").contains("QEMU emulator version"))
                #expect(text("\(root)/\(host)/network.txt").contains(ha.cluster.address(of: host == "hostA" ? 0 : 1, toward: host == "hostA" ? 1 : 0)))
                #expect(text("\(root)/\(host)/events.jsonl").contains("\"exists\"") || text("\(root)/\(host)/events.jsonl").contains("\"module\""))
                #expect(text("\(root)/\(host)/vmhad.log").contains("cluster node started"))
            }
            // A runs the guest: its live XML is the running domain's (libvirt adds the id).
            #expect(text("\(root)/hostA/domains/vm1.live.xml").contains("<domain type='qemu' id="))
            #expect(text("\(root)/hostA/config.toml").contains("key_file"))

            // The key: not its bytes, not its hex, not its base64, in no file.
            let hex = key.map { String(format: "%02x", $0) }.joined()
            let forms: [[UInt8]] = [key, Array(hex.utf8), Array(hex.uppercased().utf8), Array(Data(key).base64EncodedString().utf8)]
            for file in all {
                let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(root)/\(file)")))
                for form in forms { #expect(!contains(bytes, form), "the cluster key appears in \(file)") }
            }

            // A peer keyed differently refuses: noted in the archive, the local part is complete.
            let otherKey = "\(ha.scratch)/other.key"
            try Data((0..<32).map { _ in UInt8.random(in: 0...255) }).write(to: URL(fileURLWithPath: otherKey))
            let otherConfig = "\(ha.scratch)/other-key.toml"
            try text(ha.configPaths[0]).replacingOccurrences(of: ha.key, with: otherKey).write(toFile: otherConfig, atomically: true, encoding: .utf8)
            let wrong = try bundle(ha, config: otherConfig, name: "wrong-key")
            #expect(text("\(wrong.root)/hostB/UNREACHABLE.txt").contains("handshake failed"), "\(files(under: wrong.root))")
            #expect(files(under: wrong.root).contains("hostA/status.json"))

            // B's vmhad down: the bundle still comes, saying so.
            await ha.daemons[1]?.stop()
            let alone = try bundle(ha, config: ha.configPaths[0], name: "peer-down")
            #expect(text("\(alone.root)/hostB/UNREACHABLE.txt").contains("did not give its part"))
            #expect(text("\(alone.root)/README.txt").contains("hostB: not reachable"))
            #expect(files(under: alone.root).contains("hostA/events.jsonl"))
        }
    }

    func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, haystack.count >= needle.count else { return false }
        return (0...(haystack.count - needle.count)).contains { i in haystack[i] == needle[0] && haystack[i..<(i + needle.count)].elementsEqual(needle) }
    }
}
