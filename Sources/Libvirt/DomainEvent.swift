import CLibvirt

/// A domain lifecycle event (`VIR_DOMAIN_EVENT_ID_LIFECYCLE`), decoded.
public struct DomainEvent: Sendable, Equatable, CustomStringConvertible {
    public enum StartedReason: Sendable, Equatable { case booted, migrated, restored, other(Int32) }
    public enum StoppedReason: Sendable, Equatable {
        case shutdown, destroyed, crashed, migrated, saved, failed, other(Int32)
    }
    public enum SuspendedReason: Sendable, Equatable {
        case paused, migrated, ioError, watchdog, apiError, other(Int32)
    }
    public enum ResumedReason: Sendable, Equatable { case unpaused, migrated, other(Int32) }

    public enum Kind: Sendable, Equatable {
        case defined
        case undefined
        case started(StartedReason)
        case suspended(SuspendedReason)
        case resumed(ResumedReason)
        case stopped(StoppedReason)
        /// The guest began shutting down (ACPI handled); `stopped(.shutdown)` follows.
        case shutdown
        case crashed
        case other(event: Int32, detail: Int32)
    }

    public var domainName: String
    public var domainUUID: String
    public var kind: Kind

    public init(domainName: String, domainUUID: String, kind: Kind) {
        self.domainName = domainName
        self.domainUUID = domainUUID
        self.kind = kind
    }

    public var description: String { "\(domainName): \(kind)" }

    /// Decodes libvirt's (event, detail) pair; unknown values are kept, not dropped.
    static func kind(event: Int32, detail: Int32) -> Kind {
        func `is`<T: RawRepresentable>(_ c: T) -> Bool where T.RawValue == UInt32 { detail == Int32(c.rawValue) }
        switch UInt32(bitPattern: event) {
        case VIR_DOMAIN_EVENT_DEFINED.rawValue: return .defined
        case VIR_DOMAIN_EVENT_UNDEFINED.rawValue: return .undefined
        case VIR_DOMAIN_EVENT_STARTED.rawValue:
            if `is`(VIR_DOMAIN_EVENT_STARTED_BOOTED) { return .started(.booted) }
            if `is`(VIR_DOMAIN_EVENT_STARTED_MIGRATED) { return .started(.migrated) }
            if `is`(VIR_DOMAIN_EVENT_STARTED_RESTORED) { return .started(.restored) }
            return .started(.other(detail))
        case VIR_DOMAIN_EVENT_SUSPENDED.rawValue:
            if `is`(VIR_DOMAIN_EVENT_SUSPENDED_PAUSED) { return .suspended(.paused) }
            if `is`(VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED) { return .suspended(.migrated) }
            if `is`(VIR_DOMAIN_EVENT_SUSPENDED_IOERROR) { return .suspended(.ioError) }
            if `is`(VIR_DOMAIN_EVENT_SUSPENDED_WATCHDOG) { return .suspended(.watchdog) }
            if `is`(VIR_DOMAIN_EVENT_SUSPENDED_API_ERROR) { return .suspended(.apiError) }
            return .suspended(.other(detail))
        case VIR_DOMAIN_EVENT_RESUMED.rawValue:
            if `is`(VIR_DOMAIN_EVENT_RESUMED_UNPAUSED) { return .resumed(.unpaused) }
            if `is`(VIR_DOMAIN_EVENT_RESUMED_MIGRATED) { return .resumed(.migrated) }
            return .resumed(.other(detail))
        case VIR_DOMAIN_EVENT_STOPPED.rawValue:
            if `is`(VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN) { return .stopped(.shutdown) }
            if `is`(VIR_DOMAIN_EVENT_STOPPED_DESTROYED) { return .stopped(.destroyed) }
            if `is`(VIR_DOMAIN_EVENT_STOPPED_CRASHED) { return .stopped(.crashed) }
            if `is`(VIR_DOMAIN_EVENT_STOPPED_MIGRATED) { return .stopped(.migrated) }
            if `is`(VIR_DOMAIN_EVENT_STOPPED_SAVED) { return .stopped(.saved) }
            if `is`(VIR_DOMAIN_EVENT_STOPPED_FAILED) { return .stopped(.failed) }
            return .stopped(.other(detail))
        case VIR_DOMAIN_EVENT_SHUTDOWN.rawValue: return .shutdown
        case VIR_DOMAIN_EVENT_CRASHED.rawValue: return .crashed
        default: return .other(event: event, detail: detail)
        }
    }
}
