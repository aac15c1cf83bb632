/// Why a domain XML could not be read or rewritten.
public enum DomainXMLError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Not well-formed XML; the parser's message.
    case invalidXML(String)
    /// Well-formed, but the root element is not `<domain>`.
    case notADomain(root: String)
    case missingElement(String)
    case invalidValue(element: String, value: String)
    /// A disk selected for replication has no `<target dev=…>` with that name.
    case noSuchDisk(target: String)
    /// A selected disk exists but cannot be served over NBD (cdrom, block device, no format, …).
    case notReplicable(target: String, reason: String)
    case duplicateSelection(target: String)

    public var description: String {
        switch self {
        case .invalidXML(let m): "invalid domain XML: \(m)"
        case .notADomain(let root): "not a libvirt domain: root element is <\(root)>"
        case .missingElement(let e): "domain XML has no \(e)"
        case .invalidValue(let e, let v): "invalid value '\(v)' in \(e)"
        case .noSuchDisk(let t): "no disk with target dev '\(t)'"
        case .notReplicable(let t, let r): "disk '\(t)' cannot be replicated: \(r)"
        case .duplicateSelection(let t): "disk '\(t)' selected twice"
        }
    }
}
