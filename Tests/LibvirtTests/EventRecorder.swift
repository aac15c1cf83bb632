import Foundation
import Libvirt

/// Collects a connection's events in the background so tests can wait for one with a timeout.
actor EventRecorder {
    private(set) var events: [LibvirtConnection.Event] = []
    private var task: Task<Void, Never>?

    init(_ connection: LibvirtConnection) {
        let stream = connection.events()
        Task { await self.consume(stream) }
    }

    private func consume(_ stream: AsyncStream<LibvirtConnection.Event>) async {
        for await event in stream { events.append(event) }
    }

    struct Timeout: Error, CustomStringConvertible {
        var what: String
        var seen: [LibvirtConnection.Event]
        var description: String { "timed out waiting for \(what); saw \(seen)" }
    }

    /// Waits for the first event (at index >= `from`) matching `predicate` and returns it.
    @discardableResult
    func waitFor(
        _ what: String, from: Int = 0, timeout: Duration = .seconds(30),
        _ predicate: @Sendable (LibvirtConnection.Event) -> Bool
    ) async throws -> LibvirtConnection.Event {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let e = events.dropFirst(from).first(where: predicate) { return e }
            if ContinuousClock.now > deadline { throw Timeout(what: what, seen: events) }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    @discardableResult
    func domainEvent(_ name: String, from: Int = 0, timeout: Duration = .seconds(30),
                     _ predicate: @escaping @Sendable (DomainEvent.Kind) -> Bool) async throws -> DomainEvent.Kind {
        let e = try await waitFor("event of \(name)", from: from, timeout: timeout) {
            if case .domain(let d) = $0, d.domainName == name { return predicate(d.kind) }
            return false
        }
        guard case .domain(let d) = e else { fatalError() }
        return d.kind
    }

    var count: Int { events.count }
}
