import Libvirt
import Logging
import Testing

/// The binding against libvirt's built-in mock driver (test:///default): shapes only.
@Suite("Libvirt binding on test:///default", .serialized)
struct BindingShapeTests {
    let logger = Logger(label: "vmha.tests.binding")

    @Test func nodeInfoAndDomainOperations() async throws {
        let connection = try await LibvirtConnection.open(uri: "test:///default", keepAlive: nil, logger: logger)
        let recorder = EventRecorder(connection)
        let node = try await connection.nodeInfo()
        #expect(node.cpus > 0)
        #expect(node.memoryBytes > 0)
        #expect(node.freeMemoryBytes > 0)

        let domains = try await connection.domains()
        #expect(domains.map(\.name).contains("test"))
        let test = try await connection.domain(named: "test")
        #expect(domains.contains(test))
        let state = try await test.state()
        guard case .running = state else { Issue.record("state \(state)"); return }
        #expect(try await test.info().vcpus == 2)
        #expect(try await test.xmlDescription().contains("<name>test</name>"))

        try await test.suspend()
        #expect(try await test.state() == .paused(.user))
        try await recorder.domainEvent("test") { $0 == .suspended(.paused) }
        try await test.resume()
        try await recorder.domainEvent("test") { $0 == .resumed(.unpaused) }
        try await test.destroy()
        try await recorder.domainEvent("test") { $0 == .stopped(.destroyed) }
        #expect(try await test.state() == .shutoff(.destroyed))
        #expect(try await test.shutdown(timeout: .seconds(1)) == .alreadyOff)
        await connection.close()
    }

    @Test func defineStartUndefine() async throws {
        let connection = try await LibvirtConnection.open(uri: "test:///default", keepAlive: nil, logger: logger)
        let recorder = EventRecorder(connection)
        let xml = "<domain type='test'><name>shape</name><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>"
        let domain = try await connection.define(xml: xml)
        try await recorder.domainEvent("shape") { $0 == .defined }
        try await domain.start()
        try await recorder.domainEvent("shape") { $0 == .started(.booted) }
        #expect(try await domain.id() != nil)
        try await domain.destroy()
        #expect(try await domain.id() == nil)
        try await domain.undefine()
        try await recorder.domainEvent("shape") { $0 == .undefined }
        await connection.close()
    }

    @Test func errorsCarryLibvirtCodes() async throws {
        let connection = try await LibvirtConnection.open(uri: "test:///default", keepAlive: nil, logger: logger)
        do {
            _ = try await connection.domain(named: "no-such-domain")
            Issue.record("lookup should fail")
        } catch let error as LibvirtError {
            #expect(error.isNoDomain)
            #expect(error.operation == "virDomainLookupByName")
            #expect(!error.message.isEmpty)
        }
        await #expect(throws: LibvirtError.self) { try await connection.define(xml: "<domain><name>x") }
        // The mock has no guest agent: the call reaches libvirt-qemu and fails with libvirt's
        // error, typed (`error` is a LibvirtError without a cast).
        let test = try await connection.domain(named: "test")
        do {
            let reply = try await test.agentCommand(#"{"execute":"guest-ping"}"#, timeout: 1)
            Issue.record("guest-ping on the mock answered \(reply)")
        } catch {
            #expect(error.operation == "virDomainQemuAgentCommand" && !error.message.isEmpty, "\(error)")
        }
        await connection.close()
        await #expect(throws: LibvirtError.self) { try await connection.nodeInfo() }
        await #expect(throws: LibvirtError.self) {
            try await LibvirtConnection.open(uri: "qemu+unix:///system?socket=/nonexistent/sock", logger: logger)
        }
    }
}
