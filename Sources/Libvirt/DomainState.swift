import CLibvirt

/// `virDomainGetState`: the state and the reason libvirt recorded for it.
public enum DomainState: Sendable, Equatable, CustomStringConvertible {
    public enum PausedReason: Sendable, Equatable { case user, migration, ioError, startingUp, other(Int32) }
    public enum ShutoffReason: Sendable, Equatable {
        case shutdown, destroyed, crashed, migrated, failed, daemon, unknown, other(Int32)
    }

    case running(reason: Int32)
    case paused(PausedReason)
    case shuttingDown
    case shutoff(ShutoffReason)
    case crashed
    case other(state: Int32, reason: Int32)

    public var isActive: Bool {
        switch self {
        case .shutoff: false
        default: true
        }
    }

    public var description: String {
        switch self {
        case .running: "running"
        case .paused(let r): "paused(\(r))"
        case .shuttingDown: "shutting down"
        case .shutoff(let r): "shut off(\(r))"
        case .crashed: "crashed"
        case .other(let s, let r): "state \(s) reason \(r)"
        }
    }

    init(state: Int32, reason: Int32) {
        func `is`<T: RawRepresentable>(_ c: T) -> Bool where T.RawValue == UInt32 { reason == Int32(c.rawValue) }
        switch UInt32(bitPattern: state) {
        case VIR_DOMAIN_RUNNING.rawValue, VIR_DOMAIN_BLOCKED.rawValue:
            self = .running(reason: reason)
        case VIR_DOMAIN_PAUSED.rawValue:
            if `is`(VIR_DOMAIN_PAUSED_USER) { self = .paused(.user) }
            else if `is`(VIR_DOMAIN_PAUSED_MIGRATION) { self = .paused(.migration) }
            else if `is`(VIR_DOMAIN_PAUSED_IOERROR) { self = .paused(.ioError) }
            else if `is`(VIR_DOMAIN_PAUSED_STARTING_UP) { self = .paused(.startingUp) }
            else { self = .paused(.other(reason)) }
        case VIR_DOMAIN_SHUTDOWN.rawValue:
            self = .shuttingDown
        case VIR_DOMAIN_SHUTOFF.rawValue:
            if `is`(VIR_DOMAIN_SHUTOFF_SHUTDOWN) { self = .shutoff(.shutdown) }
            else if `is`(VIR_DOMAIN_SHUTOFF_DESTROYED) { self = .shutoff(.destroyed) }
            else if `is`(VIR_DOMAIN_SHUTOFF_CRASHED) { self = .shutoff(.crashed) }
            else if `is`(VIR_DOMAIN_SHUTOFF_MIGRATED) { self = .shutoff(.migrated) }
            else if `is`(VIR_DOMAIN_SHUTOFF_FAILED) { self = .shutoff(.failed) }
            else if `is`(VIR_DOMAIN_SHUTOFF_DAEMON) { self = .shutoff(.daemon) }
            else if `is`(VIR_DOMAIN_SHUTOFF_UNKNOWN) { self = .shutoff(.unknown) }
            else { self = .shutoff(.other(reason)) }
        case VIR_DOMAIN_CRASHED.rawValue:
            self = .crashed
        default:
            self = .other(state: state, reason: reason)
        }
    }
}
