import TOMLKit

/// A Sendable snapshot of a parsed TOML document.
///
/// TOMLKit's tables are reference types backed by C++ nodes; we copy them once into this value
/// tree so validation is plain Swift and nothing of toml++ escapes the parser.
enum ConfigNode: Sendable, Equatable {
    case table([String: ConfigNode])
    case array([ConfigNode])
    case string(String)
    case int(Int)
    case double(Double)
    case bool(Bool)
    case other(String)  // dates and times: valid TOML, never valid for us

    init(_ value: any TOMLValueConvertible) {
        switch value.type {
        case .table:
            var result: [String: ConfigNode] = [:]
            if let table = value.table {
                for key in table.keys {
                    if let child = table[key] { result[key] = ConfigNode(child) }
                }
            }
            self = .table(result)
        case .array:
            self = .array(value.array.map { $0.map { ConfigNode($0) } } ?? [])
        case .string: self = .string(value.string ?? "")
        case .int: self = .int(value.int ?? 0)
        case .double: self = .double(value.double ?? 0)
        case .bool: self = .bool(value.bool ?? false)
        default: self = .other(value.type.description)
        }
    }

    /// The TOML type name, used in "expected X, found Y" messages.
    var typeName: String {
        switch self {
        case .table: "table"
        case .array: "array"
        case .string: "string"
        case .int: "integer"
        case .double: "floating-point number"
        case .bool: "boolean"
        case .other(let name): name
        }
    }
}

/// Reads one TOML table, remembering which keys were consumed so that anything left over is
/// reported as an unknown key (typo protection: `prefered_host` must not silently mean "no preference").
struct ConfigTable {
    let path: String
    private let entries: [String: ConfigNode]
    private var consumed: Set<String> = []

    init(path: String, entries: [String: ConfigNode]) {
        self.path = path
        self.entries = entries
    }

    func keyPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    private mutating func node(_ key: String) -> ConfigNode? {
        consumed.insert(key)
        return entries[key]
    }

    private func typeError(_ key: String, expected: String, found: ConfigNode) -> ConfigurationError {
        ConfigurationError(key: keyPath(key), problem: "expected \(withArticle(expected)), found \(withArticle(found.typeName))")
    }

    private func missing(_ key: String) -> ConfigurationError {
        ConfigurationError(key: keyPath(key), problem: "required key is missing")
    }

    mutating func optionalString(_ key: String) throws(ConfigurationError) -> String? {
        guard let value = node(key) else { return nil }
        guard case .string(let string) = value else { throw typeError(key, expected: "string", found: value) }
        guard !string.isEmpty else { throw ConfigurationError(key: keyPath(key), problem: "must not be empty") }
        return string
    }

    mutating func string(_ key: String) throws(ConfigurationError) -> String {
        guard let value = try optionalString(key) else { throw missing(key) }
        return value
    }

    mutating func optionalInt(_ key: String) throws(ConfigurationError) -> Int? {
        guard let value = node(key) else { return nil }
        guard case .int(let int) = value else { throw typeError(key, expected: "integer", found: value) }
        return int
    }

    mutating func int(_ key: String) throws(ConfigurationError) -> Int {
        guard let value = try optionalInt(key) else { throw missing(key) }
        return value
    }

    /// An integer that must be at least `minimum`; `default` when absent.
    mutating func int(_ key: String, default defaultValue: Int, minimum: Int) throws(ConfigurationError) -> Int {
        let value = try optionalInt(key) ?? defaultValue
        guard value >= minimum else {
            throw ConfigurationError(key: keyPath(key), problem: "\(value) is below the minimum \(minimum)")
        }
        return value
    }

    mutating func stringArray(_ key: String) throws(ConfigurationError) -> [String] {
        guard let value = node(key) else { throw missing(key) }
        guard case .array(let items) = value else { throw typeError(key, expected: "array of strings", found: value) }
        var result: [String] = []
        for (index, item) in items.enumerated() {
            guard case .string(let string) = item else {
                throw ConfigurationError(
                    key: "\(keyPath(key))[\(index)]", problem: "expected a string, found \(withArticle(item.typeName))")
            }
            result.append(string)
        }
        return result
    }

    mutating func optionalTable(_ key: String) throws(ConfigurationError) -> ConfigTable? {
        guard let value = node(key) else { return nil }
        guard case .table(let entries) = value else { throw typeError(key, expected: "table", found: value) }
        return ConfigTable(path: keyPath(key), entries: entries)
    }

    mutating func table(_ key: String) throws(ConfigurationError) -> ConfigTable {
        guard let value = try optionalTable(key) else { throw missing(key) }
        return value
    }

    /// An array of tables (`[[hosts]]`); `nil` when absent.
    mutating func optionalTableArray(_ key: String) throws(ConfigurationError) -> [ConfigTable]? {
        guard let value = node(key) else { return nil }
        guard case .array(let items) = value else {
            throw typeError(key, expected: "array of tables", found: value)
        }
        var result: [ConfigTable] = []
        for (index, item) in items.enumerated() {
            guard case .table(let entries) = item else {
                throw ConfigurationError(
                    key: "\(keyPath(key))[\(index)]", problem: "expected a table, found \(withArticle(item.typeName))")
            }
            result.append(ConfigTable(path: "\(keyPath(key))[\(index)]", entries: entries))
        }
        return result
    }

    /// Throws for the first key (alphabetically, so the message is stable) that nobody asked for.
    func rejectUnknownKeys() throws(ConfigurationError) {
        if let unknown = entries.keys.filter({ !consumed.contains($0) }).sorted().first {
            throw ConfigurationError(key: keyPath(unknown), problem: "unknown key")
        }
    }
}

/// "an integer", "a string": messages are read by people.
func withArticle(_ noun: String) -> String {
    "aeiou".contains(noun.first ?? "x") ? "an \(noun)" : "a \(noun)"
}
