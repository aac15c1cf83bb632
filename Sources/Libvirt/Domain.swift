import CLibvirt
import Foundation

/// A libvirt domain on one ``LibvirtConnection``, identified by UUID.
///
/// Holds no `virDomainPtr`: every operation looks the domain up on the connection's *current*
/// libvirt connection, so a `Domain` stays usable after the connection was re-established.
public struct Domain: Sendable, Hashable, CustomStringConvertible {
    public let connection: LibvirtConnection
    public let name: String
    public let uuid: String

    /// How ``shutdown(timeout:)`` ended.
    public enum ShutdownOutcome: Sendable, Equatable {
        /// The guest powered off by itself after the ACPI request.
        case graceful
        /// The guest did not power off in time and was destroyed.
        case destroyed
        /// The domain was not running.
        case alreadyOff
    }

    /// `virDomainGetInfo` subset.
    public struct Info: Sendable, Equatable {
        public var vcpus: Int
        public var memoryKiB: UInt64
        public var maxMemoryKiB: UInt64
    }

    /// Options for ``migrate(_:)`` (`virDomainMigrateToURI3`, peer to peer).
    public struct MigrationOptions: Sendable {
        /// The destination libvirtd URI as the *source libvirtd* reaches it.
        public var destinationURI: String
        /// Where the destination QEMU listens for the migration stream, e.g. `tcp://10.77.0.2`.
        /// Needed whenever the destination's hostname does not resolve from the source.
        public var migrateURI: String?
        /// The domain XML the destination starts with (`VIR_MIGRATE_PARAM_DEST_XML`), e.g. with
        /// disk sources that exist only there; from ``xmlDescription(inactive:migratable:)``.
        public var destinationXML: String?
        public var live = true
        public var persistent = true
        public var undefineSource = true

        public init(destinationURI: String, migrateURI: String? = nil, destinationXML: String? = nil) {
            self.destinationURI = destinationURI
            self.migrateURI = migrateURI
            self.destinationXML = destinationXML
        }
    }

    init(connection: LibvirtConnection, pointer: OpaquePointer) throws(LibvirtError) {
        guard let name = virDomainGetName(pointer) else { throw LibvirtError.last(operation: "virDomainGetName") }
        guard let uuid = Self.uuidString(of: pointer) else {
            throw LibvirtError.last(operation: "virDomainGetUUIDString")
        }
        self.connection = connection
        self.name = String(cString: name)
        self.uuid = uuid
    }

    public var description: String { "\(name) (\(uuid))" }

    public static func == (a: Domain, b: Domain) -> Bool { a.uuid == b.uuid && a.connection === b.connection }
    public func hash(into h: inout Hasher) {
        h.combine(uuid)
        h.combine(ObjectIdentifier(connection))
    }

    static func uuidString(of dom: OpaquePointer) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(VIR_UUID_STRING_BUFLEN))
        guard virDomainGetUUIDString(dom, &buffer) == 0 else { return nil }
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    // MARK: - Lifecycle

    /// `virDomainCreate`: boots a defined domain.
    public func start() async throws { try await simple("virDomainCreate") { virDomainCreate($0) } }

    /// `virDomainDestroy`: hard power-off.
    public func destroy() async throws { try await simple("virDomainDestroy") { virDomainDestroy($0) } }

    /// `virDomainSuspend`.
    public func suspend() async throws { try await simple("virDomainSuspend") { virDomainSuspend($0) } }

    /// `virDomainResume`.
    public func resume() async throws { try await simple("virDomainResume") { virDomainResume($0) } }

    /// `virDomainUndefineFlags`: removes the persistent definition (a running domain becomes transient).
    public func undefine() async throws {
        try await simple("virDomainUndefineFlags") { virDomainUndefineFlags($0, 0) }
    }

    /// `virDomainShutdownFlags` with `VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN`, then waits up to
    /// `timeout` for the guest to power off and destroys it if it did not.
    public func shutdown(timeout: Duration, pollInterval: Duration = .milliseconds(200)) async throws -> ShutdownOutcome {
        guard try await state().isActive else { return .alreadyOff }
        // The button, never the guest agent: without flags libvirt asks a connected agent first
        // and waits up to 60 s for a silent one (the one an agent check just found hung).
        try await simple("virDomainShutdownFlags") { virDomainShutdownFlags($0, VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN.rawValue) }
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if case .shutoff = try await state() { return .graceful }
            try await Task.sleep(for: pollInterval)
        }
        do {
            try await destroy()
        } catch let error as LibvirtError where error.code == Int32(VIR_ERR_OPERATION_INVALID.rawValue) {
            // It powered off between the last poll and the destroy.
            if case .shutoff = try await state() { return .graceful }
            throw error
        }
        return .destroyed
    }

    // MARK: - Queries

    /// `virDomainGetState`.
    public func state() async throws -> DomainState {
        try await withDomain("virDomainGetState") { dom throws(LibvirtError) in
            var state: Int32 = 0
            var reason: Int32 = 0
            try check(virDomainGetState(dom, &state, &reason, 0), "virDomainGetState")
            return DomainState(state: state, reason: reason)
        }
    }

    /// `virDomainGetInfo`: vCPUs and memory.
    public func info() async throws -> Info {
        try await withDomain("virDomainGetInfo") { dom throws(LibvirtError) in
            var info = virDomainInfo()
            try check(virDomainGetInfo(dom, &info), "virDomainGetInfo")
            return Info(vcpus: Int(info.nrVirtCpu), memoryKiB: UInt64(info.memory), maxMemoryKiB: UInt64(info.maxMem))
        }
    }

    /// `virDomainGetXMLDesc`; `inactive` returns the persistent definition instead of the live one,
    /// `migratable` the form a migration's destination XML must be derived from.
    public func xmlDescription(inactive: Bool = false, migratable: Bool = false) async throws -> String {
        try await withDomain("virDomainGetXMLDesc") { dom throws(LibvirtError) in
            let flags = (inactive ? VIR_DOMAIN_XML_INACTIVE.rawValue : 0) | (migratable ? VIR_DOMAIN_XML_MIGRATABLE.rawValue : 0)
            guard let xml = virDomainGetXMLDesc(dom, flags) else {
                throw LibvirtError.last(operation: "virDomainGetXMLDesc")
            }
            defer { free(xml) }
            return String(cString: xml)
        }
    }

    /// `virDomainGetID`: nil when the domain is not running.
    public func id() async throws -> UInt32? {
        try await withDomain("virDomainGetID") { dom throws(LibvirtError) in
            let id = virDomainGetID(dom)
            return id == UInt32.max ? nil : id
        }
    }

    // MARK: - Guest agent

    /// `virDomainQemuAgentCommand` (libvirt-qemu): sends one QMP command to the guest's
    /// qemu-guest-agent and returns its reply (e.g. `{"return":{}}` for `{"execute":"guest-ping"}`).
    /// libvirt syncs with the agent (`guest-sync`, up to 5 s) when it connects and after a
    /// timeout; `timeout` bounds the command itself, in whole seconds, or one of libvirt's special
    /// values (-2 block, -1 libvirt's default, 0 do not wait). Fails at once when no agent is
    /// connected (the guest has not opened its `org.qemu.guest_agent.0` port).
    public func agentCommand(_ json: String, timeout: Int32) async throws(LibvirtError) -> String {
        try await withDomain("virDomainQemuAgentCommand") { dom throws(LibvirtError) in
            guard let reply = virDomainQemuAgentCommand(dom, json, timeout, 0) else {
                throw LibvirtError.last(operation: "virDomainQemuAgentCommand")
            }
            defer { free(reply) }
            return String(cString: reply)
        }
    }

    // MARK: - Migration

    /// `virDomainMigrateToURI3` with `VIR_MIGRATE_PEER2PEER`: the source libvirtd connects to
    /// `destinationURI` itself. Returns when the migration finished (or failed).
    public func migrate(_ options: MigrationOptions) async throws {
        try await withDomain("virDomainMigrateToURI3") { dom throws(LibvirtError) in
            var flags = VIR_MIGRATE_PEER2PEER.rawValue
            if options.live { flags |= VIR_MIGRATE_LIVE.rawValue }
            if options.persistent { flags |= VIR_MIGRATE_PERSIST_DEST.rawValue }
            if options.undefineSource { flags |= VIR_MIGRATE_UNDEFINE_SOURCE.rawValue }
            var params: virTypedParameterPtr? = nil
            var count: Int32 = 0
            var capacity: Int32 = 0
            defer { virTypedParamsFree(params, count) }
            for (name, value) in [(VIR_MIGRATE_PARAM_URI, options.migrateURI), (VIR_MIGRATE_PARAM_DEST_XML, options.destinationXML)] {
                guard let value else { continue }
                try check(virTypedParamsAddString(&params, &count, &capacity, name, value), "virTypedParamsAddString")
            }
            try check(
                virDomainMigrateToURI3(dom, options.destinationURI, params, UInt32(count), flags),
                "virDomainMigrateToURI3")
        }
    }

    // MARK: - Internals

    private func simple(_ operation: String, _ call: @escaping @Sendable (OpaquePointer) -> Int32) async throws {
        try await withDomain(operation) { dom throws(LibvirtError) in try check(call(dom), operation) }
    }

    private func withDomain<T: Sendable>(
        _ operation: String, _ body: @escaping @Sendable (OpaquePointer) throws(LibvirtError) -> T
    ) async throws(LibvirtError) -> T {
        let uuid = self.uuid
        let connection = self.connection
        return try await Blocking.run { () throws(LibvirtError) -> T in
            try connection.withConnection(operation) { conn throws(LibvirtError) in
                guard let dom = virDomainLookupByUUIDString(conn, uuid) else {
                    throw LibvirtError.last(operation: operation)
                }
                defer { virDomainFree(dom) }
                return try body(dom)
            }
        }
    }
}
