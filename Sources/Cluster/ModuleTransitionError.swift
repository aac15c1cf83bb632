/// An event that must not happen in the module's current status. Returned, never swallowed: it
/// means either a bug in the caller or a safety violation (split brain) that needs an operator.
public struct ModuleTransitionError: Error, Sendable, Equatable, CustomStringConvertible {
    public var status: ModuleStatus
    public var event: ModuleEvent
    public var reason: String

    public var description: String { "\(event) is illegal in \(status): \(reason)" }
}
