import Testing
@testable import Cluster

/// `[[vms.checks]]` and `[vms.recovery]` (issue 15, docs/config.md).
@Suite struct CheckConfigurationTests {
    func parse(_ vmTail: String) throws -> VMConfiguration {
        try #require(try ClusterConfiguration.parse(ConfigurationTests.minimal + ConfigurationTests.vm("vm1") + vmTail).vms.first)
    }

    func error(_ vmTail: String) -> String {
        do {
            _ = try ClusterConfiguration.parse(ConfigurationTests.minimal + ConfigurationTests.vm("vm1") + vmTail)
            return "no error"
        } catch {
            return error.description
        }
    }

    @Test func checksAndRecoveryParseWithTheirDefaults() throws {
        let vm = try parse("""
            [[vms.checks]]
            kind = "tcp"
            address = "192.168.122.10:80"
            [[vms.checks]]
            kind = "script"
            name = "app"
            command = "curl -fsS http://192.168.122.10/health"
            interval_ms = 2000
            timeout_ms = 1500
            failures = 2
            startup_grace_ms = 30000
            [vms.recovery]
            restarts = 1
            hold_down_ms = 60000
            """)
        #expect(vm.checks.count == 2)
        #expect(vm.checks[0] == VMConfiguration.Check(name: "tcp 192.168.122.10:80", probe: .tcp(EndpointAddress(host: "192.168.122.10", port: 80))))
        #expect(vm.checks[0].interval == .seconds(5) && vm.checks[0].timeout == .seconds(2) && vm.checks[0].thresholds == CheckThresholds())
        #expect(vm.checks[1].name == "app" && vm.checks[1].probe == .script("curl -fsS http://192.168.122.10/health"))
        #expect(vm.checks[1].interval == .seconds(2) && vm.checks[1].timeout == .milliseconds(1500))
        #expect(vm.checks[1].thresholds.failuresBeforeAction == 2 && vm.checks[1].thresholds.startupGrace == .seconds(30))
        #expect(vm.recovery == RecoveryLimits(restarts: 1, window: .seconds(600), holdDown: .seconds(60)))
        #expect(try parse("").checks.isEmpty && (try parse("")).recovery == RecoveryLimits())
    }

    /// `kind = "agent"` needs nothing else: libvirt knows the domain's agent channel.
    @Test func anAgentCheckNeedsOnlyItsKind() throws {
        let vm = try parse("""
            [[vms.checks]]
            kind = "agent"
            timeout_ms = 1500
            [[vms.checks]]
            kind = "agent"
            name = "agent again"
            """)
        #expect(vm.checks.map(\.name) == ["agent", "agent again"])
        #expect(vm.checks.allSatisfy { $0.probe == .agent })
        #expect(vm.checks[0].timeout == .milliseconds(1500) && vm.checks[0].interval == .seconds(5))
        #expect(vm.checks[1].timeout == .seconds(2) && vm.checks[1].thresholds == CheckThresholds())
    }

    @Test func anAgentCheckWithAnAddressOrCommandIsRefused() {
        // An agent check probes no address and runs no command: giving one is a mistake to show.
        #expect(error("[[vms.checks]]\nkind = \"agent\"\naddress = \"10.0.0.5:22\"\n") == "vms[0].checks[0].address: unknown key")
        #expect(error("[[vms.checks]]\nkind = \"agent\"\ncommand = \"true\"\n") == "vms[0].checks[0].command: unknown key")
        #expect(error("[[vms.checks]]\nkind = \"agent\"\n[[vms.checks]]\nkind = \"agent\"\n")
                == "vms[0].checks[1].name: two checks named \"agent\" (give each a name)")
    }

    @Test func aBadCheckIsOneLineNamingTheKey() {
        #expect(error("[[vms.checks]]\nkind = \"icmp\"\n") == "vms[0].checks[0].kind: \"icmp\" is not one of script, tcp, ping, agent")
        #expect(error("[[vms.checks]]\nkind = \"ping\"\naddress = \"-f\"\n") == "vms[0].checks[0].address: \"-f\" is not a host name or address")
        #expect(error("[[vms.checks]]\nkind = \"tcp\"\naddress = \"10.0.0.5\"\n").hasPrefix("vms[0].checks[0].address: "))
        #expect(error("[[vms.checks]]\nkind = \"script\"\ncommand = \"  \"\n") == "vms[0].checks[0].command: an empty command")
        #expect(error("[[vms.checks]]\nkind = \"script\"\n").hasPrefix("vms[0].checks[0].command"))
        #expect(error("[[vms.checks]]\nkind = \"script\"\ncommand = \"true\"\ninterval_ms = 1000\ntimeout_ms = 2000\n")
                == "vms[0].checks[0].timeout_ms: 2000 exceeds interval_ms (1000)")
        #expect(error("[[vms.checks]]\nkind = \"script\"\ncommand = \"true\"\nfailures = 0\n") == "vms[0].checks[0].failures: 0 is below the minimum 1")
        #expect(error("[[vms.checks]]\nkind = \"script\"\ncommand = \"true\"\n[[vms.checks]]\nkind = \"script\"\ncommand = \"false\"\n")
                == "vms[0].checks[1].name: two checks named \"script\" (give each a name)")
        #expect(error("[[vms.checks]]\nkind = \"script\"\ncommand = \"true\"\nretries = 3\n").contains("retries"))
        #expect(error("[vms.recovery]\nrestarts = -1\n") == "vms[0].recovery.restarts: -1 is below the minimum 0")
    }

    @Test func aPingCheckNamesItsAddress() throws {
        let vm = try parse("[[vms.checks]]\nkind = \"ping\"\naddress = \"192.168.122.10\"\n")
        #expect(vm.checks == [VMConfiguration.Check(name: "ping 192.168.122.10", probe: .ping("192.168.122.10"))])
    }

    func hostConfig(_ hostATail: String) throws -> ClusterConfiguration {
        try ClusterConfiguration.parse(hostText(hostATail) + ConfigurationTests.vm("vm1"))
    }

    func hostText(_ hostATail: String) -> String {
        ConfigurationTests.minimal.replacingOccurrences(of: "heartbeat_addresses = [\"10.0.0.1:7788\"]\n", with: "heartbeat_addresses = [\"10.0.0.1:7788\"]\n" + hostATail)
    }

    func hostError(_ hostATail: String) -> String {
        do {
            _ = try hostConfig(hostATail)
            return "no error"
        } catch {
            return "\(error)"
        }
    }

    /// `[[hosts.checks]]`: each host's own (interface names differ between hosts), with the host
    /// defaults (2 s interval, 1 s timeout, no start-up grace).
    @Test func hostChecksParseWithTheirDefaults() throws {
        let config = try hostConfig("""
            [[hosts.checks]]
            kind = "interface"
            interface = "vmbr0"
            [[hosts.checks]]
            kind = "script"
            name = "storage"
            command = "mountpoint -q /var/lib/vmha"
            failures = 2
            """)
        #expect(config.hosts[0].checks == [
            HostConfiguration.Check(name: "interface vmbr0", probe: .interface("vmbr0")),
            HostConfiguration.Check(name: "storage", probe: .script("mountpoint -q /var/lib/vmha"), thresholds: CheckThresholds(failuresBeforeAction: 2, startupGrace: .zero)),
        ])
        #expect(config.hosts[0].checks[0].interval == .seconds(2) && config.hosts[0].checks[0].timeout == .seconds(1))
        #expect(config.hosts[1].checks.isEmpty)
        // A short interval without a timeout: the timeout defaults to the interval.
        let quick = try hostConfig("[[hosts.checks]]\nkind = \"script\"\ncommand = \"true\"\ninterval_ms = 500\n")
        #expect(quick.hosts[0].checks[0].timeout == .milliseconds(500))
    }

    @Test func aBadHostCheckIsOneLineNamingTheKey() {
        #expect(hostError("[[hosts.checks]]\nkind = \"tcp\"\n") == "hosts[0].checks[0].kind: \"tcp\" is not one of interface, script")
        #expect(hostError("[[hosts.checks]]\nkind = \"interface\"\ninterface = \"a-very-long-interface-name\"\n")
                == "hosts[0].checks[0].interface: \"a-very-long-interface-name\" is not an interface name (1–15 characters, no '/' or blanks)")
        #expect(hostError("[[hosts.checks]]\nkind = \"interface\"\n").hasPrefix("hosts[0].checks[0].interface"))
        #expect(hostError("[[hosts.checks]]\nkind = \"interface\"\ninterface = \"eth0\"\n[[hosts.checks]]\nkind = \"interface\"\ninterface = \"eth0\"\n")
                == "hosts[0].checks[1].name: two checks named \"interface eth0\" (give each a name)")
        #expect(hostError("[[hosts.checks]]\nkind = \"script\"\ncommand = \"true\"\nvm = \"x\"\n").contains("vm"))
    }

    /// `[resync]` (issue 19): rates and the latency target, with a clear error for nonsense.
    @Test func resyncRatesParseAndNonsenseIsNamed() throws {
        let text = ConfigurationTests.minimal + "[resync]\nmax_rate = 104857600\nmin_rate = 8388608\nlatency_target_ms = 5\n" + ConfigurationTests.vm("vm1")
        let resync = try ClusterConfiguration.parse(text).resync
        #expect(resync.maxRate == 100 << 20 && resync.minRate == 8 << 20 && resync.latencyTarget == .milliseconds(5))
        #expect(try ClusterConfiguration.parse(ConfigurationTests.minimal + ConfigurationTests.vm("vm1")).resync == ClusterConfiguration.Resync())
        func error(_ table: String) -> String {
            do {
                _ = try ClusterConfiguration.parse(ConfigurationTests.minimal + "[resync]\n" + table + ConfigurationTests.vm("vm1"))
                return "no error"
            } catch {
                return "\(error)"
            }
        }
        #expect(error("max_rate = 1000\n") == "resync.max_rate: 1000 bytes/s is below 1 MiB/s")
        #expect(error("max_rate = 10485760\nmin_rate = 20971520\n") == "resync.min_rate: 20971520 exceeds max_rate (10485760)")
        #expect(error("latency_target_ms = 0\n") == "resync.latency_target_ms: 0 is below the minimum 1")
        #expect(error("speed = 3\n").contains("speed"))
    }
}
