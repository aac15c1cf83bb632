import Testing
@testable import Cluster

@Suite struct ConfigurationEditorTests {
    static let documented: String = {
        let doc = try! Repository.read("docs/config.md")
        let start = doc.range(of: "```toml\n")!
        let end = doc.range(of: "```", range: start.upperBound..<doc.endIndex)!
        return String(doc[start.upperBound..<end.lowerBound])
    }()

    static let odd = VMConfiguration(
        name: "app \"7\"", domainXMLPath: "/etc/vmha/app7.xml",
        disks: [.init(selector: .target("vdb"), imagePath: "/img/a\\b.raw", metadataPath: "/meta/app7.meta"),
                .init(selector: .source("/var/lib/x.qcow2"), imagePath: "/img/x.qcow2", metadataPath: "/meta/x.meta")],
        priority: 50, preferredHost: "hostB", failback: .automatic)

    @Test func addedVMParsesBackIdentically() throws {
        let before = try ClusterConfiguration.parse(Self.documented)
        let text = ConfigurationEditor.adding(Self.odd, to: Self.documented)
        let after = try ClusterConfiguration.parse(text)
        #expect(after.vms.count == before.vms.count + 1)
        #expect(after.vms.last == Self.odd)
        #expect(Array(after.vms.dropLast()) == before.vms)
        #expect(text.hasPrefix(Self.documented), "the operator's text is kept as written")
    }

    @Test func removedVMIsGoneAndTheRestIsKept() throws {
        let before = try ClusterConfiguration.parse(Self.documented)
        let first = try #require(before.vms.first)
        let text = try ConfigurationEditor.removing(vm: first.name, from: Self.documented)
        let after = try ClusterConfiguration.parse(text)
        #expect(after.vms == Array(before.vms.dropFirst()))
        #expect(after.hosts == before.hosts && after.nbd == before.nbd && after.timeouts == before.timeouts)
        // Add then remove gives back the same configuration.
        let roundTrip = try ConfigurationEditor.removing(vm: Self.odd.name, from: ConfigurationEditor.adding(Self.odd, to: Self.documented))
        #expect(try ClusterConfiguration.parse(roundTrip) == before)
        #expect(roundTrip == Self.documented, "byte for byte")
        // Removing the last one, too.
        let last = try #require(before.vms.last)
        #expect(try ClusterConfiguration.parse(try ConfigurationEditor.removing(vm: last.name, from: Self.documented)).vms == Array(before.vms.dropLast()))
    }

    @Test func removingAnUnknownVMIsAnError() {
        #expect(throws: ConfigurationError(key: "vms", problem: "no VM named \"nope\"")) {
            try ConfigurationEditor.removing(vm: "nope", from: Self.documented)
        }
    }
}
