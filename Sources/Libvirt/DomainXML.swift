import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// A user's libvirt domain XML: the facts vmha needs, and the rewrite that puts selected file
/// disks onto NBD exports served over UNIX sockets.
///
/// Keeps the original text (XMLDocument is not Sendable) and re-parses it for a rewrite.
public struct DomainXML: Sendable, Equatable {
    public struct Disk: Sendable, Equatable {
        /// `<disk type=…>`: file, block, network, volume, dir.
        public var type: String
        /// `<disk device=…>`: disk, cdrom, floppy, lun.
        public var device: String
        /// `<driver type=…>`, e.g. raw or qcow2; nil when libvirt would probe.
        public var format: String?
        /// `<source file=…>` (or `dev=` for block disks).
        public var sourcePath: String?
        /// `<target dev=…>`: the key used to select disks.
        public var target: String
        public var bus: String?

        /// Why this disk cannot be put on NBD, or nil if it can.
        public var notReplicableReason: String? {
            if device != "disk" { return "device is '\(device)', only 'disk' is replicated" }
            if type != "file" { return "disk type is '\(type)', only 'file' disks are replicated" }
            if sourcePath == nil { return "disk has no <source file=…>" }
            guard let format else { return "disk has no <driver type=…> (format must be explicit)" }
            if format != "raw" && format != "qcow2" { return "format '\(format)' is not raw or qcow2" }
            return nil
        }
    }

    /// Where a replicated disk is served.
    public struct NBDSource: Sendable, Equatable {
        public var target: String
        public var exportName: String
        public var socketPath: String
        public init(target: String, exportName: String, socketPath: String) {
            self.target = target
            self.exportName = exportName
            self.socketPath = socketPath
        }
    }

    public let text: String
    public let name: String
    public let uuid: String?
    /// `<domain type=…>`: kvm or qemu.
    public let domainType: String
    public let vcpus: Int
    public let memoryBytes: UInt64
    public let disks: [Disk]

    public init(_ text: String) throws(DomainXMLError) {
        let doc = try Self.parse(text)
        let root = doc.rootElement()!
        self.text = text
        guard let name = root.child("name")?.stringValue, !name.isEmpty else {
            throw .missingElement("<name>")
        }
        self.name = name
        self.uuid = root.child("uuid")?.stringValue
        self.domainType = root.attr("type") ?? ""
        guard let vcpuText = root.child("vcpu")?.stringValue else { throw .missingElement("<vcpu>") }
        guard let vcpus = Int(vcpuText.trimmingCharacters(in: .whitespacesAndNewlines)), vcpus > 0 else {
            throw .invalidValue(element: "<vcpu>", value: vcpuText)
        }
        self.vcpus = vcpus
        guard let memory = root.child("memory") else { throw .missingElement("<memory>") }
        self.memoryBytes = try Self.bytes(memory)
        let devices = root.child("devices")
        self.disks = try (devices?.elements(forName: "disk") ?? []).map { disk throws(DomainXMLError) in
            guard let target = disk.child("target")?.attr("dev") else {
                throw .missingElement("<target dev=…> in a <disk>")
            }
            let source = disk.child("source")
            return Disk(
                type: disk.attr("type") ?? "file",
                device: disk.attr("device") ?? "disk",
                format: disk.child("driver")?.attr("type"),
                sourcePath: source?.attr("file") ?? source?.attr("dev"),
                target: target,
                bus: disk.child("target")?.attr("bus"))
        }
    }

    public func disk(target: String) -> Disk? { disks.first { $0.target == target } }

    /// Returns the XML with each selected file disk turned into
    /// `<disk type='network'><source protocol='nbd' name=EXPORT><host transport='unix' socket=PATH/>`,
    /// and its `<driver>` set to `error_policy='stop' rerror_policy='stop'` so an NBD failure
    /// pauses the guest instead of handing it an I/O error. Everything else is left as it was.
    public func replacingDisks(with sources: [NBDSource]) throws(DomainXMLError) -> String {
        var seen = Set<String>()
        for s in sources where !seen.insert(s.target).inserted { throw .duplicateSelection(target: s.target) }
        for s in sources {
            guard let disk = disk(target: s.target) else { throw .noSuchDisk(target: s.target) }
            if let reason = disk.notReplicableReason { throw .notReplicable(target: s.target, reason: reason) }
        }
        let doc = try Self.parse(text)
        let diskElements = doc.rootElement()?.child("devices")?.elements(forName: "disk") ?? []
        for s in sources {
            guard let element = diskElements.first(where: { $0.child("target")?.attr("dev") == s.target }),
                  let oldSource = element.child("source"), let driver = element.child("driver")
            else { throw .noSuchDisk(target: s.target) }
            element.setAttr("type", "network")
            driver.setAttr("error_policy", "stop")
            driver.setAttr("rerror_policy", "stop")
            let source = XMLElement(name: "source")
            source.setAttr("protocol", "nbd")
            if !s.exportName.isEmpty { source.setAttr("name", s.exportName) }
            let host = XMLElement(name: "host")
            host.setAttr("transport", "unix")
            host.setAttr("socket", s.socketPath)
            source.addChild(host)
            // Same position as the file source, so the document reads like the original.
            element.replaceChild(at: oldSource.index, with: source)
        }
        return doc.rootElement()!.xmlString
    }

    private static func parse(_ text: String) throws(DomainXMLError) -> XMLDocument {
        // XMLDocument on Linux recovers from some errors (an unclosed tag yields a partial
        // tree), so check well-formedness with the strict SAX parser first.
        // XMLParser.parse() can even return true for a mismatched end tag; the delegate still
        // hears about it.
        let strict = XMLParser(data: Data(text.utf8))
        let errors = ParseErrorCollector()
        strict.delegate = errors
        let ok = strict.parse()
        if let error = errors.first ?? strict.parserError ?? (ok ? nil : CocoaError(.fileReadCorruptFile)) {
            throw .invalidXML("line \(errors.line ?? strict.lineNumber): \(error.localizedDescription) (\((error as NSError).code))")
        }
        let doc: XMLDocument
        do {
            doc = try XMLDocument(xmlString: text, options: [.nodePreserveWhitespace])
        } catch {
            throw .invalidXML("\(error)")
        }
        guard let root = doc.rootElement() else { throw .invalidXML("no root element") }
        guard root.name == "domain" else { throw .notADomain(root: root.name ?? "") }
        return doc
    }

    /// `<memory unit=…>` in bytes; libvirt's default unit is KiB.
    private static func bytes(_ element: XMLElement) throws(DomainXMLError) -> UInt64 {
        let raw = (element.stringValue ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        guard let value = UInt64(raw) else { throw .invalidValue(element: "<memory>", value: raw) }
        let unit = element.attr("unit") ?? "KiB"
        let multiplier: UInt64
        switch unit {
        case "b", "bytes": multiplier = 1
        case "KB": multiplier = 1000
        case "k", "KiB": multiplier = 1 << 10
        case "MB": multiplier = 1_000_000
        case "M", "MiB": multiplier = 1 << 20
        case "GB": multiplier = 1_000_000_000
        case "G", "GiB": multiplier = 1 << 30
        case "TB": multiplier = 1_000_000_000_000
        case "T", "TiB": multiplier = 1 << 40
        default: throw .invalidValue(element: "<memory unit>", value: unit)
        }
        return value * multiplier
    }
}

extension XMLElement {
    fileprivate func child(_ name: String) -> XMLElement? { elements(forName: name).first }
    fileprivate func attr(_ name: String) -> String? { attribute(forName: name)?.stringValue }
    fileprivate func setAttr(_ name: String, _ value: String) {
        if let a = attribute(forName: name) {
            a.stringValue = value
        } else {
            addAttribute(XMLNode.attribute(withName: name, stringValue: value) as! XMLNode)
        }
    }
}

/// Records the first error XMLParser reports, including ones it recovers from.
private final class ParseErrorCollector: NSObject, XMLParserDelegate {
    var first: Error?
    var line: Int?
    func parser(_ parser: XMLParser, parseErrorOccurred parseError: Error) {
        if first == nil {
            first = parseError
            line = parser.lineNumber
        }
    }
}
