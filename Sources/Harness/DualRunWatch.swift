import Foundation
import Libvirt
import Logging

/// Follows the lifecycle events of every host's libvirtd and records each moment a domain starts
/// or resumes on one host while it still runs on another: the one thing an HA cluster must never
/// allow. A paused domain does not count as running (its I/O is frozen, as when a fenced host
/// suspends its guests); nor does the incoming domain of a live migration (`started(migrated)`)
/// until it resumes, which QEMU does only after the source has stopped the guest.
///
/// Two libvirtds' event streams are not ordered with each other, nor is a libvirtd's state with
/// its own QEMU: the incoming domain's `resumed(migrated)` was seen while the source's libvirtd
/// still reported the guest running (on a loaded machine, `LiveMigrationTests` failed so, twice,
/// even asking the source's state at that event). QEMU itself orders them: the destination's
/// CPUs run only on the migration stream's end, which the source sends after it stopped its own.
/// So `resumed(migrated)` ends the source's run; a source that ran again would say `resumed` or
/// `started`, and that is caught.
///
/// A hard-crashed host's libvirtd cannot report its QEMUs' deaths, so the caller says when they
/// are gone (``hostCrashed(_:)``, after ``SimulatedHost/crash()`` returned).
public actor DualRunWatch {
    public struct Start: Sendable {
        public var host: Int
        public var domain: String
        public var at: ContinuousClock.Instant
    }

    private var running: [Set<String>]
    /// Every `started` event, in the order each host's libvirtd delivered them.
    public private(set) var starts: [Start] = []
    /// One line per domain seen starting on a host while running on another.
    public private(set) var violations: [String] = []
    private var connections: [LibvirtConnection] = []
    private var consumers: [Task<Void, Never>] = []

    private init(hosts: Int) { running = Array(repeating: [], count: hosts) }

    /// Subscribes to every host's events; start it before any domain runs.
    public static func start(hosts: [SimulatedHost], logger: Logger) async throws -> DualRunWatch {
        let watch = DualRunWatch(hosts: hosts.count)
        for (index, host) in hosts.enumerated() {
            let connection = try await LibvirtConnection.open(uri: host.uri, logger: logger)
            await watch.follow(connection, host: index)
        }
        return watch
    }

    private func follow(_ connection: LibvirtConnection, host: Int) {
        connections.append(connection)
        let stream = connection.events()
        consumers.append(Task { for await event in stream { self.observe(event, host: host) } })
    }

    private func observe(_ event: LibvirtConnection.Event, host: Int) {
        guard case .domain(let domain) = event else { return }
        switch domain.kind {
        case .started(.migrated):
            starts.append(Start(host: host, domain: domain.domainName, at: .now))
        case .started, .resumed:
            if case .resumed(.migrated) = domain.kind {
                for other in running.indices where other != host { running[other].remove(domain.domainName) }
            }
            for other in running.indices where other != host && running[other].contains(domain.domainName) {
                violations.append("\(domain.domainName) \(domain.kind) on host \(host) while running on host \(other)")
            }
            running[host].insert(domain.domainName)
            if case .started = domain.kind { starts.append(Start(host: host, domain: domain.domainName, at: .now)) }
        case .suspended, .stopped, .crashed:
            running[host].remove(domain.domainName)
        default:
            break
        }
    }

    /// The host's QEMUs were killed with it.
    public func hostCrashed(_ host: Int) { running[host] = [] }

    /// Domain names in the order they started on `host`, from `since` on.
    public func startOrder(host: Int, since: ContinuousClock.Instant) -> [String] {
        starts.filter { $0.host == host && $0.at >= since }.map(\.domain)
    }

    public func stop() async {
        for connection in connections { await connection.close() }
        for consumer in consumers { consumer.cancel() }
        connections = []
        consumers = []
    }
}
