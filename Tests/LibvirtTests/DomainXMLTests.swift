import Foundation
import Libvirt
import Testing
#if canImport(FoundationXML)
import FoundationXML
#endif

@Suite("DomainXML parsing and NBD rewriting")
struct DomainXMLTests {
    static func fixture(_ name: String) throws -> String {
        let url = try #require(Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: "xml"))
        return try String(contentsOf: url, encoding: .utf8)
    }

    static func nbd(_ target: String, _ export: String = "") -> DomainXML.NBDSource {
        DomainXML.NBDSource(target: target, exportName: export, socketPath: "/run/vmha/\(target).sock")
    }

    // MARK: parsing

    @Test func parsesVirtInstallDomain() throws {
        let xml = try DomainXML(Self.fixture("virt-install-debian"))
        #expect(xml.name == "debian12-web")
        #expect(xml.uuid == "4f2b7a36-1c52-4a8e-9d2b-6d9d3b1e0a11")
        #expect(xml.domainType == "kvm")
        #expect(xml.vcpus == 2)
        #expect(xml.memoryBytes == 4 << 30)
        #expect(xml.disks.map(\.target) == ["vda", "vdb", "sda"])
        #expect(xml.disk(target: "vda")?.format == "qcow2")
        #expect(xml.disk(target: "vdb")?.sourcePath == "/var/lib/libvirt/images/debian12-web-data.img")
        #expect(xml.disk(target: "vda")?.notReplicableReason == nil)
        #expect(xml.disk(target: "sda")?.device == "cdrom")
        #expect(xml.disk(target: "sda")?.notReplicableReason != nil)
    }

    @Test func parsesOddLayout() throws {
        let xml = try DomainXML(Self.fixture("odd-layout"))
        #expect(xml.name == "legacy-app")
        #expect(xml.uuid == nil)
        #expect(xml.vcpus == 4)
        #expect(xml.memoryBytes == 768 << 20)
        #expect(xml.disks.map(\.target) == ["fda", "hda", "hdb", "vda", "vdb"])
        #expect(xml.disk(target: "hda")?.format == "qcow2")
        #expect(xml.disk(target: "hdb")?.device == "disk")  // device defaults to disk
        #expect(xml.disk(target: "hdb")?.format == nil)
        #expect(xml.disk(target: "vda")?.type == "network")
    }

    @Test func memoryUnits() throws {
        let xml = try DomainXML(Self.fixture("db-with-scratch"))
        #expect(xml.memoryBytes == 16 << 30)
        #expect(xml.vcpus == 8)
        #expect(xml.disk(target: "vdd")?.sourcePath == "/dev/vg0/pg-archive")
    }

    // MARK: rewriting

    @Test func rewritesSelectedDisksAndKeepsEverythingElse() throws {
        let original = try Self.fixture("virt-install-debian")
        let rewritten = try DomainXML(original).replacingDisks(with: [Self.nbd("vda", "web-root"), Self.nbd("vdb")])
        let before = try XMLDocument(xmlString: original)
        let after = try XMLDocument(xmlString: rewritten)

        let parsed = try DomainXML(rewritten)
        #expect(parsed.disks.map(\.type) == ["network", "network", "file"])
        #expect(parsed.disks.map(\.format) == ["qcow2", "raw", "raw"])

        let vda = try disk(after, "vda")
        let source = try #require(vda.elements(forName: "source").first)
        #expect(source.attribute(forName: "protocol")?.stringValue == "nbd")
        #expect(source.attribute(forName: "name")?.stringValue == "web-root")
        #expect(source.attribute(forName: "file") == nil)
        let host = try #require(source.elements(forName: "host").first)
        #expect(host.attribute(forName: "transport")?.stringValue == "unix")
        #expect(host.attribute(forName: "socket")?.stringValue == "/run/vmha/vda.sock")
        // Default export "" is written without a name attribute (libvirt's default).
        #expect(try disk(after, "vdb").elements(forName: "source").first?.attribute(forName: "name") == nil)

        for target in ["vda", "vdb"] {
            let old = try disk(before, target)
            let new = try disk(after, target)
            // The driver keeps every attribute and gains the stop policies.
            let oldDriver = try attributes(#require(old.elements(forName: "driver").first))
            var newDriver = try attributes(#require(new.elements(forName: "driver").first))
            #expect(newDriver.removeValue(forKey: "error_policy") == "stop")
            #expect(newDriver.removeValue(forKey: "rerror_policy") == "stop")
            #expect(newDriver == oldDriver)
            // Every child but <source> is unchanged and in the same order.
            #expect(childStrings(old, except: ["source", "driver"]) == childStrings(new, except: ["source", "driver"]))
            #expect(new.children?.firstIndex { $0.name == "source" } == old.children?.firstIndex { $0.name == "source" })
            #expect(attributes(new)["device"] == attributes(old)["device"])
        }
        // The cdrom is byte-identical, and so is everything outside the disks.
        #expect(try disk(before, "sda").xmlString == disk(after, "sda").xmlString)
        #expect(withoutDisks(before) == withoutDisks(after))
    }

    @Test func scratchAndBlockDisksAreLeftAlone() throws {
        let original = try Self.fixture("db-with-scratch")
        let rewritten = try DomainXML(original).replacingDisks(with: [Self.nbd("vda"), Self.nbd("vdb", "pgdata")])
        let before = try XMLDocument(xmlString: original)
        let after = try XMLDocument(xmlString: rewritten)
        #expect(try disk(before, "vdc").xmlString == disk(after, "vdc").xmlString)
        #expect(try disk(before, "vdd").xmlString == disk(after, "vdd").xmlString)
        // qcow2 disk keeps its iotune, serial and backingStore.
        let keep = ["source", "driver"]
        #expect(childStrings(try disk(before, "vdb"), except: keep) == childStrings(try disk(after, "vdb"), except: keep))
        // Comments survive.
        #expect(rewritten.contains("scratch/tmp disk: must NOT be replicated"))
    }

    @Test func oddLayoutRewriteDropsSeclabelButKeepsOrder() throws {
        let original = try Self.fixture("odd-layout")
        let rewritten = try DomainXML(original).replacingDisks(with: [Self.nbd("hda", "legacy")])
        let after = try XMLDocument(xmlString: rewritten)
        let hda = try disk(after, "hda")
        #expect(hda.children?.compactMap(\.name) == ["target", "source", "driver", "address", "boot"])
        #expect(hda.elements(forName: "source").first?.elements(forName: "seclabel").isEmpty == true)
        #expect(rewritten.contains("qemu:commandline"))
        #expect(try DomainXML(rewritten).disk(target: "fda")?.type == "file")
    }

    // MARK: errors

    @Test(arguments: [
        ("sda", "cdrom"), ("vdd", "block"), ("fda", "floppy"), ("hdb", "format must be explicit"),
        ("vdb", "vmdk"), ("vda", "network"),
    ])
    func refusesDisksThatCannotBeReplicated(target: String, reasonFragment: String) throws {
        let fixture = ["sda"].contains(target) ? "virt-install-debian"
            : target == "vdd" ? "db-with-scratch" : "odd-layout"
        let xml = try DomainXML(Self.fixture(fixture))
        do {
            _ = try xml.replacingDisks(with: [Self.nbd(target)])
            Issue.record("rewrite of \(target) should have failed")
        } catch {
            guard case .notReplicable(let t, let reason) = error else {
                Issue.record("unexpected error \(error)")
                return
            }
            #expect(t == target)
            #expect(reason.contains(reasonFragment), "\(reason)")
        }
    }

    @Test func unknownTargetIsATypedError() throws {
        let xml = try DomainXML(Self.fixture("virt-install-debian"))
        #expect(throws: DomainXMLError.noSuchDisk(target: "vdz")) {
            try xml.replacingDisks(with: [Self.nbd("vda"), Self.nbd("vdz")])
        }
        #expect(throws: DomainXMLError.duplicateSelection(target: "vda")) {
            try xml.replacingDisks(with: [Self.nbd("vda"), Self.nbd("vda")])
        }
    }

    @Test func invalidDocuments() throws {
        #expect {
            try DomainXML(Self.fixture("malformed"))
        } throws: { error in
            if case .invalidXML = error as? DomainXMLError { return true }
            return false
        }
        #expect(throws: DomainXMLError.notADomain(root: "network")) { try DomainXML(Self.fixture("not-a-domain")) }
        #expect(throws: DomainXMLError.missingElement("<name>")) {
            try DomainXML("<domain><vcpu>1</vcpu><memory>1024</memory></domain>")
        }
        #expect(throws: DomainXMLError.invalidValue(element: "<memory unit>", value: "parsecs")) {
            try DomainXML("<domain><name>x</name><vcpu>1</vcpu><memory unit='parsecs'>1</memory></domain>")
        }
    }

    // MARK: helpers

    func disk(_ doc: XMLDocument, _ target: String) throws -> XMLElement {
        let disks = doc.rootElement()?.elements(forName: "devices").first?.elements(forName: "disk") ?? []
        return try #require(disks.first {
            $0.elements(forName: "target").first?.attribute(forName: "dev")?.stringValue == target
        })
    }

    func attributes(_ e: XMLElement) -> [String: String] {
        Dictionary(uniqueKeysWithValues: (e.attributes ?? []).map { ($0.name ?? "", $0.stringValue ?? "") })
    }

    func childStrings(_ e: XMLElement, except names: [String]) -> [String] {
        (e.children ?? []).filter { !names.contains($0.name ?? "") }.map(\.xmlString)
    }

    func withoutDisks(_ doc: XMLDocument) -> String {
        let copy = doc.copy() as! XMLDocument
        let devices = copy.rootElement()?.elements(forName: "devices").first
        for d in devices?.elements(forName: "disk") ?? [] { d.detach() }
        return copy.xmlString
    }
}
