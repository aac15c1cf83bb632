/// A configuration problem, always naming the key that is wrong so the operator can fix it
/// from one line of output (`vms[2].preferred_host: "hostC" is not one of the hosts (hostA, hostB)`).
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The dotted path of the offending key, e.g. `vms[2].preferred_host`; `<toml>` for syntax errors.
    public var key: String
    /// What is wrong with it, in words.
    public var problem: String

    public init(key: String, problem: String) {
        self.key = key
        self.problem = problem
    }

    public var description: String { "\(key): \(problem)" }
}
