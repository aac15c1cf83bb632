/// A `host:port` address as written in the configuration (`10.0.0.1:7789`, `[fd00::1]:7789`,
/// `hosta.example:7789`). Resolution is the caller's business; we only check the shape.
public struct EndpointAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port`; returns a problem description instead of throwing so the caller can
    /// attach the key path.
    static func parse(_ text: String) -> Result<EndpointAddress, AddressProblem> {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            // IPv6 literal: the brackets are how `host:port` stays unambiguous.
            guard let close = text.firstIndex(of: "]") else { return .failure(AddressProblem(message: "\"\(text)\" has no closing \"]\"")) }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return .failure(AddressProblem(message: "\"\(text)\" is not host:port")) }
            portText = rest.dropFirst()
        } else {
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2 else {
                return .failure(AddressProblem(message: "\"\(text)\" is not host:port (IPv6 addresses go in brackets: [fd00::1]:7789)"))
            }
            host = parts[0]
            portText = parts[1]
        }
        guard !host.isEmpty else { return .failure(AddressProblem(message: "\"\(text)\" has an empty host")) }
        guard let port = Int(portText), (1...65535).contains(port) else {
            return .failure(AddressProblem(message: "\"\(text)\" has no valid port (1-65535)"))
        }
        return .success(EndpointAddress(host: String(host), port: port))
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// Why an address string is not `host:port`; the parser attaches the key path.
struct AddressProblem: Error {
    var message: String
}
