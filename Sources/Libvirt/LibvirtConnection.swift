import CLibvirt
import Foundation
import Logging
import Synchronization

/// A connection to one libvirtd, kept alive across libvirtd restarts.
///
/// libvirt signals a lost connection (libvirtd restarted or killed, keepalive timeout) through
/// the close callback; the connection then reopens the same URI in the background and
/// re-registers its event callbacks. Running guests are not touched: libvirtd itself re-attaches
/// to its QEMUs, this type only talks to it again.
///
/// Call ``close()`` when done: the C callbacks hold a reference to the connection.
public final class LibvirtConnection: Sendable {
    /// What an ``events()`` stream delivers.
    public enum Event: Sendable, Equatable {
        case domain(DomainEvent)
        case disconnected(CloseReason)
        case reconnected
    }

    /// `virConnectCloseReason`.
    public enum CloseReason: Sendable, Equatable {
        case error, endOfFile, keepalive, client, other(Int32)

        init(_ raw: Int32) {
            switch UInt32(bitPattern: raw) {
            case VIR_CONNECT_CLOSE_REASON_ERROR.rawValue: self = .error
            case VIR_CONNECT_CLOSE_REASON_EOF.rawValue: self = .endOfFile
            case VIR_CONNECT_CLOSE_REASON_KEEPALIVE.rawValue: self = .keepalive
            case VIR_CONNECT_CLOSE_REASON_CLIENT.rawValue: self = .client
            default: self = .other(raw)
            }
        }
    }

    /// `virConnectSetKeepAlive` parameters: the peer is declared dead after about
    /// `interval * (count + 1)` seconds without an answer.
    public struct KeepAlive: Sendable {
        public var interval: Int32
        public var count: UInt32
        public init(interval: Int32 = 5, count: UInt32 = 3) {
            self.interval = interval
            self.count = count
        }
    }

    private struct State {
        /// The live `virConnectPtr` as a bit pattern (pointers are not Sendable); nil while reconnecting.
        var connection: UInt?
        var lifecycleCallbackID: Int32 = -1
        var closedByUser = false
    }

    public let uri: String
    let keepAlive: KeepAlive?
    let reconnectInterval: Duration
    let logger: Logger
    private let state = Mutex(State())
    private let subscribers = Mutex<(next: Int, continuations: [Int: AsyncStream<Event>.Continuation])>((0, [:]))

    private init(uri: String, keepAlive: KeepAlive?, reconnectInterval: Duration, logger: Logger) {
        self.uri = uri
        self.keepAlive = keepAlive
        self.reconnectInterval = reconnectInterval
        self.logger = logger
    }

    /// Opens `uri` (e.g. `qemu:///system`, `qemu+unix:///system?socket=/path/libvirt-sock`, `test:///default`).
    public static func open(
        uri: String,
        keepAlive: KeepAlive? = KeepAlive(),
        reconnectInterval: Duration = .milliseconds(500),
        logger: Logger
    ) async throws -> LibvirtConnection {
        LibvirtEventLoop.ensureRunning()
        let connection = LibvirtConnection(
            uri: uri, keepAlive: keepAlive, reconnectInterval: reconnectInterval, logger: logger)
        try await Blocking.run { try connection.connect() }
        logger.debug("libvirt connected", metadata: ["uri": "\(uri)"])
        return connection
    }

    /// `true` while a live libvirt connection exists (false during reconnection).
    public var isConnected: Bool { state.withLock { $0.connection != nil } }

    /// A stream of lifecycle events of every domain on this host plus connection loss/recovery.
    /// Each call returns an independent stream; it ends when ``close()`` is called.
    public func events() -> AsyncStream<Event> {
        let (stream, continuation) = AsyncStream<Event>.makeStream(bufferingPolicy: .bufferingNewest(1024))
        let id = subscribers.withLock { s in
            let id = s.next
            s.next += 1
            s.continuations[id] = continuation
            return id
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.subscribers.withLock { $0.continuations.removeValue(forKey: id) }
        }
        return stream
    }

    /// Deregisters callbacks and closes the libvirt connection; ends all event streams.
    public func close() async {
        let raw: UInt? = state.withLock { s in
            s.closedByUser = true
            defer { s.connection = nil }
            return s.connection
        }
        let callbackID = state.withLock { $0.lifecycleCallbackID }
        if let raw {
            await Blocking.run {
                let ptr = OpaquePointer(bitPattern: raw)
                Self.release(ptr, lifecycleCallbackID: callbackID)
            }
        }
        let continuations = subscribers.withLock { s in
            defer { s.continuations = [:] }
            return Array(s.continuations.values)
        }
        continuations.forEach { $0.finish() }
    }

    // MARK: - Host queries

    public func nodeInfo() async throws -> NodeInfo {
        try await Blocking.run {
            try self.withConnection("virNodeGetInfo") { conn throws(LibvirtError) in
                var info = virNodeInfo()
                try check(virNodeGetInfo(conn, &info), "virNodeGetInfo")
                let free = virNodeGetFreeMemory(conn)
                if free == 0 { throw LibvirtError.last(operation: "virNodeGetFreeMemory") }
                let model = withUnsafeBytes(of: info.model) { raw in
                    String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
                }
                return NodeInfo(
                    cpus: Int(info.cpus), memoryBytes: UInt64(info.memory) * 1024,
                    freeMemoryBytes: free, cpuModel: model)
            }
        }
    }

    /// `virConnectGetHostname`.
    public func hostname() async throws -> String {
        try await Blocking.run {
            try self.withConnection("virConnectGetHostname") { conn throws(LibvirtError) in
                guard let name = virConnectGetHostname(conn) else {
                    throw LibvirtError.last(operation: "virConnectGetHostname")
                }
                defer { free(name) }
                return String(cString: name)
            }
        }
    }

    /// `virConnectGetDomainCapabilities` for the default emulator: needs libvirt's QEMU
    /// capabilities, so its time shows whether libvirtd re-probes QEMU at every call.
    public func domainCapabilities() async throws -> String {
        try await Blocking.run {
            try self.withConnection("virConnectGetDomainCapabilities") { conn throws(LibvirtError) in
                guard let xml = virConnectGetDomainCapabilities(conn, nil, nil, nil, nil, 0) else {
                    throw LibvirtError.last(operation: "virConnectGetDomainCapabilities")
                }
                defer { free(xml) }
                return String(cString: xml)
            }
        }
    }

    // MARK: - Domains

    /// `virDomainDefineXML`: makes a persistent definition (replacing one with the same name/UUID).
    @discardableResult
    public func define(xml: String) async throws -> Domain {
        try await Blocking.run {
            try self.withConnection("virDomainDefineXML") { conn throws(LibvirtError) in
                guard let dom = virDomainDefineXML(conn, xml) else {
                    throw LibvirtError.last(operation: "virDomainDefineXML")
                }
                defer { virDomainFree(dom) }
                return try Domain(connection: self, pointer: dom)
            }
        }
    }

    /// `virDomainLookupByName`.
    public func domain(named name: String) async throws -> Domain {
        try await Blocking.run {
            try self.withConnection("virDomainLookupByName") { conn throws(LibvirtError) in
                guard let dom = virDomainLookupByName(conn, name) else {
                    throw LibvirtError.last(operation: "virDomainLookupByName")
                }
                defer { virDomainFree(dom) }
                return try Domain(connection: self, pointer: dom)
            }
        }
    }

    /// `virConnectListAllDomains`: active and inactive domains.
    public func domains() async throws -> [Domain] {
        try await Blocking.run {
            try self.withConnection("virConnectListAllDomains") { conn throws(LibvirtError) in
                var list: UnsafeMutablePointer<virDomainPtr?>?
                let n = virConnectListAllDomains(conn, &list, 0)
                try check(n, "virConnectListAllDomains")
                defer {
                    for i in 0..<Int(n) { if let d = list?[i] { virDomainFree(d) } }
                    free(list)
                }
                var result: [Domain] = []
                for i in 0..<Int(n) {
                    if let d = list?[i] { result.append(try Domain(connection: self, pointer: d)) }
                }
                return result
            }
        }
    }

    // MARK: - Internals

    /// Runs `body` with a referenced `virConnectPtr`; a reconnect cannot free it underneath.
    func withConnection<T>(
        _ operation: String, _ body: (OpaquePointer) throws(LibvirtError) -> T
    ) throws(LibvirtError) -> T {
        let raw: UInt? = state.withLock { s in
            guard let raw = s.connection else { return nil }
            virConnectRef(OpaquePointer(bitPattern: raw))
            return raw
        }
        guard let raw, let conn = OpaquePointer(bitPattern: raw) else {
            throw LibvirtError.notConnected(operation: operation)
        }
        defer { virConnectClose(conn) }
        return try body(conn)
    }

    /// Opens the URI and registers keepalive, close and lifecycle callbacks. Blocking.
    private func connect() throws(LibvirtError) {
        guard let conn = virConnectOpen(uri) else { throw LibvirtError.last(operation: "virConnectOpen") }
        do throws(LibvirtError) {
            if let keepAlive {
                // Returns 1 when the driver has no keepalive (e.g. test:///): fine, not an error.
                try check(virConnectSetKeepAlive(conn, keepAlive.interval, keepAlive.count), "virConnectSetKeepAlive")
            }
            let closeContext = Unmanaged.passRetained(self).toOpaque()
            if virConnectRegisterCloseCallback(conn, connectionClosedTrampoline, closeContext, releaseContextTrampoline) < 0 {
                let error = LibvirtError.last(operation: "virConnectRegisterCloseCallback")
                Unmanaged<LibvirtConnection>.fromOpaque(closeContext).release()
                // test:/// has no close callback support; only remote connections need it.
                if error.code != Int32(VIR_ERR_NO_SUPPORT.rawValue) { throw error }
            }
            let eventContext = Unmanaged.passRetained(self).toOpaque()
            let callback = unsafeBitCast(
                domainLifecycleTrampoline as DomainLifecycleCallback, to: virConnectDomainEventGenericCallback.self)
            let id = virConnectDomainEventRegisterAny(
                conn, nil, Int32(VIR_DOMAIN_EVENT_ID_LIFECYCLE.rawValue), callback, eventContext,
                releaseContextTrampoline)
            if id < 0 {
                let error = LibvirtError.last(operation: "virConnectDomainEventRegisterAny")
                Unmanaged<LibvirtConnection>.fromOpaque(eventContext).release()
                throw error
            }
            let raw = UInt(bitPattern: conn)
            let keep = state.withLock { s -> Bool in
                guard !s.closedByUser else { return false }
                s.connection = raw
                s.lifecycleCallbackID = id
                return true
            }
            if !keep { Self.release(conn, lifecycleCallbackID: id) }
        } catch {
            virConnectClose(conn)
            throw error
        }
    }

    /// Deregisters our callbacks (best effort: the peer may be gone) and drops the connection.
    private static func release(_ conn: OpaquePointer?, lifecycleCallbackID: Int32) {
        guard let conn else { return }
        if lifecycleCallbackID >= 0 { _ = virConnectDomainEventDeregisterAny(conn, lifecycleCallbackID) }
        _ = virConnectUnregisterCloseCallback(conn, connectionClosedTrampoline)
        virConnectClose(conn)
    }

    // Called on the libvirt event thread.
    func handleClosed(_ conn: OpaquePointer?, reason: Int32) {
        let raw = UInt(bitPattern: conn)
        let (mine, callbackID) = state.withLock { s -> (Bool, Int32) in
            guard !s.closedByUser, s.connection == raw else { return (false, -1) }
            s.connection = nil
            return (true, s.lifecycleCallbackID)
        }
        guard mine else { return }
        let why = CloseReason(reason)
        logger.warning("libvirt connection lost, reconnecting", metadata: ["uri": "\(uri)", "reason": "\(why)"])
        broadcast(.disconnected(why))
        // Never block or close the connection on the event thread: libvirt would deadlock.
        Thread.detachNewThread { [self] in
            Self.release(OpaquePointer(bitPattern: raw), lifecycleCallbackID: callbackID)
            reconnectLoop()
        }
    }

    private func reconnectLoop() {
        var attempts = 0
        while !state.withLock({ $0.closedByUser }) {
            attempts += 1
            do {
                try connect()
                if state.withLock({ $0.closedByUser }) { return }
                logger.info("libvirt connection re-established", metadata: ["uri": "\(uri)", "attempts": "\(attempts)"])
                broadcast(.reconnected)
                return
            } catch {
                logger.debug("libvirt reconnect failed", metadata: ["uri": "\(uri)", "error": "\(error)"])
                let c = reconnectInterval.components
                Thread.sleep(forTimeInterval: Double(c.seconds) + Double(c.attoseconds) / 1e18)
            }
        }
    }

    // Called on the libvirt event thread.
    func handleLifecycle(domain: OpaquePointer?, event: Int32, detail: Int32) {
        guard let domain else { return }
        let name = virDomainGetName(domain).map { String(cString: $0) } ?? "?"
        let uuid = Domain.uuidString(of: domain) ?? ""
        broadcast(.domain(DomainEvent(domainName: name, domainUUID: uuid, kind: DomainEvent.kind(event: event, detail: detail))))
    }

    private func broadcast(_ event: Event) {
        let continuations = subscribers.withLock { Array($0.continuations.values) }
        for c in continuations { c.yield(event) }
    }
}
