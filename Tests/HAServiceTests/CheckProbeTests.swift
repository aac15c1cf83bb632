import Cluster
import Foundation
import Harness
import Libvirt
import Logging
import Testing

@testable import HAService

#if canImport(Glibc)
import Glibc
#endif

/// The checks' probes against real processes and real TCP (issue 15).
@Suite("Check probes")
struct CheckProbeTests {
    @Test(.timeLimit(.minutes(1))) func aScriptSeesTheVMAndHostAndItsExitStatusIsTheVerdict() async throws {
        let ok = await CheckProbe.script(#"[ "$VMHA_VM" = vm7 ] && [ "$VMHA_HOST" = hostB ]"#, timeout: .seconds(5), environment: ["VMHA_VM": "vm7", "VMHA_HOST": "hostB"])
        #expect(ok == CheckProbe.Result(healthy: true, detail: "script exit 0"))
        let wrongVM = await CheckProbe.script(#"[ "$VMHA_VM" = vm7 ]"#, timeout: .seconds(5), environment: ["VMHA_VM": "vm8", "VMHA_HOST": "hostB"])
        #expect(wrongVM == CheckProbe.Result(healthy: false, detail: "script exit 1"))
        let missing = await CheckProbe.script("/nonexistent/checker", timeout: .seconds(5), environment: ["VMHA_VM": "vm7", "VMHA_HOST": "hostB"])
        #expect(missing == CheckProbe.Result(healthy: false, detail: "script exit 127"))
    }

    @Test(.timeLimit(.minutes(1))) func aScriptPastItsTimeoutIsKilledAndFailed() async throws {
        let started = ContinuousClock.now
        let hung = await CheckProbe.script("sleep 30", timeout: .milliseconds(300), environment: ["VMHA_VM": "vm1", "VMHA_HOST": "hostA"])
        #expect(!hung.healthy && hung.detail.hasPrefix("script timed out after"), "\(hung)")
        #expect(started.duration(to: .now) < .seconds(10), "the hung script was not killed")
    }

    /// The passing case needs a guest with an agent: `AgentCheckTests` (HATests).
    @Test(.timeLimit(.minutes(1))) func anAgentProbeWithoutAnAgentFailsWithLibvirtsReason() async throws {
        let none = await CheckProbe.agent(nil, domain: "test", timeout: .seconds(1))
        #expect(none == CheckProbe.Result(healthy: false, detail: "guest-ping: no libvirt connection"))
        // libvirt's mock driver has no guest agent.
        let connection = try await LibvirtConnection.open(uri: "test:///default", keepAlive: nil, logger: Logger(label: "vmha.tests.probe"))
        let mock = await CheckProbe.agent(connection, domain: "test", timeout: .seconds(1))
        #expect(!mock.healthy && mock.detail.hasPrefix("guest-ping: virDomainQemuAgentCommand: "), "\(mock)")
        let missing = await CheckProbe.agent(connection, domain: "no-such-domain", timeout: .seconds(1))
        #expect(!missing.healthy && missing.detail.hasPrefix("guest-ping: virDomainLookupByName: "), "\(missing)")
        await connection.close()
    }

    @Test(.timeLimit(.minutes(1))) func tcpPassesOnAListenerAndFailsOnAClosedPort() async throws {
        // A real listener on loopback, on a port the kernel picks. Close-on-exec: a process that
        // a parallel test starts meanwhile must not inherit it (it kept the port listening after
        // the close below). Closed once, below: a second close in a `defer` closed whatever a
        // parallel test had opened under the same number since (its writes then landed in
        // other tests' sockets and files).
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        try #require(fd >= 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        #expect(bound == 0 && listen(fd, 4) == 0)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        let port = Int(UInt16(bigEndian: address.sin_port))
        let up = await CheckProbe.tcp(EndpointAddress(host: "127.0.0.1", port: port), timeout: .seconds(2))
        #expect(up.healthy, "\(up)")
        close(fd)
        let down = await CheckProbe.tcp(EndpointAddress(host: "127.0.0.1", port: port), timeout: .seconds(2))
        #expect(!down.healthy && down.detail.contains("127.0.0.1:\(port)"), "\(down)")
    }

    /// A veth pair made for the test (root's namespace, which this process's `SIOCGIFFLAGS`
    /// answers for): down, up without carrier (its peer down), up with carrier, then gone.
    @Test(.timeLimit(.minutes(1))) func anInterfaceMustBeUpWithCarrier() async throws {
        let name = "vh\(UInt32.random(in: 0..<1_000_000))", other = name + "p"
        try await Shell.run(async: ["ip", "link", "add", name, "type", "veth", "peer", "name", other])
        defer { _ = try? Shell.run(["ip", "link", "del", name]) }
        #expect(CheckProbe.interface(name) == CheckProbe.Result(healthy: false, detail: "\(name) is down"))
        try await Shell.run(async: ["ip", "link", "set", name, "up"])
        #expect(CheckProbe.interface(name) == CheckProbe.Result(healthy: false, detail: "\(name) has no carrier"))
        try await Shell.run(async: ["ip", "link", "set", other, "up"])
        #expect(CheckProbe.interface(name) == CheckProbe.Result(healthy: true, detail: "\(name) up, carrier"))
        try await Shell.run(async: ["ip", "link", "del", name])
        #expect(CheckProbe.interface(name) == CheckProbe.Result(healthy: false, detail: "no interface \(name) here"))
    }

    /// One echo to loopback answers; one to an address routed into a veth whose peer drops it
    /// (nothing leaves the machine) is a failure within the timeout.
    @Test(.timeLimit(.minutes(1))) func pingPassesOnAnAnswerAndFailsOnSilence() async throws {
        let up = await CheckProbe.ping("127.0.0.1", timeout: .seconds(2))
        #expect(up == CheckProbe.Result(healthy: true, detail: "127.0.0.1 answered"))
        let name = "vh\(UInt32.random(in: 0..<1_000_000))", other = name + "p"
        let net = "10.233.\(Int.random(in: 1...250))"
        try await Shell.run(async: ["ip", "link", "add", name, "type", "veth", "peer", "name", other])
        defer { _ = try? Shell.run(["ip", "link", "del", name]) }
        try await Shell.run(async: ["ip", "addr", "add", "\(net).1/30", "dev", name])
        try await Shell.run(async: ["ip", "link", "set", name, "up"])
        try await Shell.run(async: ["ip", "link", "set", other, "up"])
        let started = ContinuousClock.now
        let silent = await CheckProbe.ping("\(net).2", timeout: .seconds(1))
        #expect(!silent.healthy && silent.detail.contains("\(net).2"), "\(silent)")
        #expect(started.duration(to: .now) < .seconds(5))
    }
}
