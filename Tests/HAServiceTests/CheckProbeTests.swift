import Cluster
import Foundation
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
        let ok = await CheckProbe.script(#"[ "$VMHA_VM" = vm7 ] && [ "$VMHA_HOST" = hostB ]"#, timeout: .seconds(5), vm: "vm7", host: "hostB")
        #expect(ok == CheckProbe.Result(healthy: true, detail: "script exit 0"))
        let wrongVM = await CheckProbe.script(#"[ "$VMHA_VM" = vm7 ]"#, timeout: .seconds(5), vm: "vm8", host: "hostB")
        #expect(wrongVM == CheckProbe.Result(healthy: false, detail: "script exit 1"))
        let missing = await CheckProbe.script("/nonexistent/checker", timeout: .seconds(5), vm: "vm7", host: "hostB")
        #expect(missing == CheckProbe.Result(healthy: false, detail: "script exit 127"))
    }

    @Test(.timeLimit(.minutes(1))) func aScriptPastItsTimeoutIsKilledAndFailed() async throws {
        let started = ContinuousClock.now
        let hung = await CheckProbe.script("sleep 30", timeout: .milliseconds(300), vm: "vm1", host: "hostA")
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
        // A real listener on loopback, on a port the kernel picks.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #expect(fd >= 0)
        defer { close(fd) }
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
}
