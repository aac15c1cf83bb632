/// Edits the text of a configuration file for `vmha add` / `vmha remove`: the file stays the one
/// source of truth (a restarted vmhad finds what was added), and everything else in it — comments,
/// order, formatting — is kept as the operator wrote it. The caller re-parses the result with
/// `ClusterConfiguration.parse` before writing it, so an edit can never produce a file vmhad
/// would refuse at the next start.
public enum ConfigurationEditor {
    /// The text with one `[[vms]]` entry (and its `[[vms.disks]]`) appended.
    public static func adding(_ vm: VMConfiguration, to text: String) -> String {
        var lines = ["", "[[vms]]", "name = \(quoted(vm.name))", "domain_xml = \(quoted(vm.domainXMLPath))"]
        if vm.priority != 0 { lines.append("priority = \(vm.priority)") }
        if let host = vm.preferredHost { lines.append("preferred_host = \(quoted(host))") }
        if vm.failback != .manual { lines.append("failback = \(quoted(vm.failback.rawValue))") }
        for disk in vm.disks {
            lines.append("[[vms.disks]]")
            switch disk.selector {
            case .target(let target): lines.append("target = \(quoted(target))")
            case .source(let source): lines.append("source = \(quoted(source))")
            }
            lines.append("image = \(quoted(disk.imagePath))")
            lines.append("metadata = \(quoted(disk.metadataPath))")
        }
        let base = text.hasSuffix("\n") || text.isEmpty ? text : text + "\n"
        return base + lines.joined(separator: "\n") + "\n"
    }

    /// The text without the `[[vms]]` entry named `name`: from its header up to the next header
    /// that is not one of its sub-tables (`[[vms.…]]`, `[vms.…]`).
    public static func removing(vm name: String, from text: String) throws(ConfigurationError) -> String {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var starts: [Int] = []
        for (index, line) in lines.enumerated() where header(line) == "[[vms]]" { starts.append(index) }
        for start in starts {
            var end = start + 1
            while end < lines.count {
                if let h = header(lines[end]), !(h.hasPrefix("[[vms.") || h.hasPrefix("[vms.")) { break }
                end += 1
            }
            let named = lines[(start + 1)..<end].contains { line in
                let parts = line.split(separator: "=", maxSplits: 1).map(trimmed)
                guard parts.count == 2, parts[0] == "name" else { return false }
                return [quoted(name), "'\(name)'"].contains { value in
                    parts[1].hasPrefix(value) && (parts[1].count == value.count || trimmed(parts[1].dropFirst(value.count)).hasPrefix("#"))
                }
            }
            guard named else { continue }
            // Comments and blank lines just above the next header belong to what follows.
            while end > start + 1, trimmed(lines[end - 1]).hasPrefix("#") { end -= 1 }
            // The last entry also takes the blank line that `adding` put before it.
            let first = end == lines.count && start > 0 && trimmed(lines[start - 1]).isEmpty ? start - 1 : start
            if end == lines.count { return lines[..<first].joined(separator: "\n") + "\n" }
            return (Array(lines[..<first]) + Array(lines[end...])).joined(separator: "\n")
        }
        throw ConfigurationError(key: "vms", problem: "no VM named \"\(name)\"")
    }

    /// A TOML basic string.
    static func quoted(_ string: String) -> String {
        var out = "\""
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x7f:
                let hex = String(scalar.value, radix: 16, uppercase: true)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    /// The table header on this line (`[x]` or `[[x]]`, whitespace removed), if it is one.
    private static func header(_ line: String) -> String? {
        var text = Substring(trimmed(line))
        guard text.hasPrefix("[") else { return nil }
        if let comment = text.firstIndex(of: "#") { text = text[..<comment] }
        return text.filter { !$0.isWhitespace }
    }

    private static func trimmed(_ text: some StringProtocol) -> String {
        String(text.drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
    }
}
