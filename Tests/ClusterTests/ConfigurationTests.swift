import ReplicationPolicy
import Testing
@testable import Cluster

@Suite struct ConfigurationTests {
    static let minimal = """
        [cluster]
        name = "c1"
        key_file = "/etc/vmha/key"

        [[hosts]]
        name = "hostA"
        replication_address = "10.0.0.1:7789"
        heartbeat_addresses = ["10.0.0.1:7788"]

        [[hosts]]
        name = "hostB"
        replication_address = "10.0.0.2:7789"
        heartbeat_addresses = ["10.0.0.2:7788"]

        """

    static func vm(_ name: String, preferred: String? = nil, image: String? = nil) -> String {
        """

        [[vms]]
        name = "\(name)"
        domain_xml = "/etc/vmha/\(name).xml"
        \(preferred.map { "preferred_host = \"\($0)\"" } ?? "")
        [[vms.disks]]
        target = "vda"
        image = "\(image ?? "/img/\(name).qcow2")"
        metadata = "/meta/\(name).meta"

        """
    }

    func error(_ text: String) -> String {
        do {
            _ = try ClusterConfiguration.parse(text)
            return "no error"
        } catch {
            return error.description
        }
    }

    @Test func documentedExampleParses() throws {
        let doc = try Repository.read("docs/config.md")
        let start = try #require(doc.range(of: "```toml\n"))
        let end = try #require(doc.range(of: "```", range: start.upperBound..<doc.endIndex))
        let config = try ClusterConfiguration.parse(String(doc[start.upperBound..<end.lowerBound]))
        #expect(config.clusterName == "prod-pair")
        #expect(config.keyFile == "/etc/vmha/cluster.key")
        #expect(config.hosts.map(\.name) == ["hostA", "hostB"])
        #expect(config.hosts[0].heartbeatAddresses == [
            EndpointAddress(host: "10.0.1.1", port: 7788), EndpointAddress(host: "192.168.50.1", port: 7788),
        ])
        #expect(config.hosts[0].capacity == HostConfiguration.Capacity(vcpus: 32, memoryMiB: 126976))
        #expect(config.hosts[1].capacity == HostConfiguration.Capacity())
        #expect(config.hosts[1].domainType == .kvm)
        #expect(config.hosts[0].migrationURI == "qemu+ssh://10.0.1.1/system" && config.hosts[1].migrationURI == nil)
        #expect(config.witness?.address == EndpointAddress(host: "10.0.9.9", port: 7790))
        #expect(config.vms.map(\.name) == ["web1", "db1"])
        #expect(config.vms[0].failback == .automatic && config.vms[1].failback == .manual)
        #expect(config.vms[0].disks[0].selector == .target("vda"))
        #expect(config.vms[1].disks[0].selector == .source("/var/lib/libvirt/images/db1-data.raw"))
        #expect(config.vms[1].priority == 200)
        #expect(config.nbd.socketMode == 0o660)
        #expect(config.nbd.socketGroup == "libvirt-qemu")
        #expect(config.timeouts.detection == .seconds(3))
        #expect(config.splitBrainPolicy == .discardLeastChanges)
        #expect(config.peer(of: "hostA")?.name == "hostB")
    }

    @Test func defaultsApplyToMinimalFile() throws {
        let config = try ClusterConfiguration.parse(Self.minimal)
        #expect(config.limits.maxVMs == 25)
        #expect(config.limits.concurrentStarts == 2)
        #expect(config.timeouts.heartbeatInterval == .milliseconds(500))
        #expect(config.timeouts.witnessLease == .seconds(4))
        #expect(config.stateDirectory == "/var/lib/vmha")
        #expect(config.witness == nil)
        #expect(config.vms.isEmpty)
        #expect(config.hosts[0].libvirtURI == "qemu:///system")
        #expect(config.splitBrainPolicy == .disconnect)
    }

    @Test func splitBrainPolicyIsOneOfTheKnownNames() throws {
        for policy in SplitBrainPolicy.allCases {
            let text = Self.minimal.replacingOccurrences(of: "name = \"c1\"\n", with: "name = \"c1\"\nsplit_brain = \"\(policy.rawValue)\"\n")
            #expect(try ClusterConfiguration.parse(text).splitBrainPolicy == policy)
        }
        let typo = Self.minimal.replacingOccurrences(of: "name = \"c1\"\n", with: "name = \"c1\"\nsplit_brain = \"discard-secondary\"\n")
        #expect(error(typo) == "cluster.split_brain: \"discard-secondary\" is not one of disconnect, discard-younger-primary, discard-least-changes, discard-zero-changes")
        let wrongType = Self.minimal.replacingOccurrences(of: "name = \"c1\"\n", with: "name = \"c1\"\nsplit_brain = 1\n")
        #expect(error(wrongType).hasPrefix("cluster.split_brain: expected a string"))
    }

    @Test func ipv6AddressesInBrackets() throws {
        let text = Self.minimal.replacingOccurrences(of: "\"10.0.0.1:7789\"", with: "\"[fd00::1]:7789\"")
        let config = try ClusterConfiguration.parse(text)
        #expect(config.hosts[0].replicationAddress == EndpointAddress(host: "fd00::1", port: 7789))
        #expect(config.hosts[0].replicationAddress.description == "[fd00::1]:7789")
    }

    @Test func missingRequiredKey() {
        let text = Self.minimal.replacingOccurrences(of: "key_file = \"/etc/vmha/key\"\n", with: "")
        #expect(error(text) == "cluster.key_file: required key is missing")
        #expect(error("") == "cluster: required key is missing")
    }

    @Test func wrongType() {
        let text = Self.minimal + "[limits]\nmax_vms = \"many\"\n"
        #expect(error(text) == "limits.max_vms: expected an integer, found a string")
        let hosts = Self.minimal.replacingOccurrences(of: "heartbeat_addresses = [\"10.0.0.2:7788\"]", with: "heartbeat_addresses = [7788]")
        #expect(error(hosts) == "hosts[1].heartbeat_addresses[0]: expected a string, found an integer")
    }

    @Test func unknownKeyIsATypo() {
        #expect(error(Self.minimal + Self.vm("web1").replacingOccurrences(of: "name = \"web1\"", with: "name = \"web1\"\nprefered_host = \"hostA\""))
            == "vms[0].prefered_host: unknown key")
        #expect(error(Self.minimal + "[timeout]\ndetection_ms = 3000\n") == "timeout: unknown key")
    }

    @Test func preferredHostMustExist() {
        let text = Self.minimal + Self.vm("a") + Self.vm("b") + Self.vm("c", preferred: "hostC")
        #expect(error(text) == "vms[2].preferred_host: \"hostC\" is not one of the hosts (hostA, hostB)")
    }

    @Test func duplicateVMNames() {
        let text = Self.minimal + Self.vm("web1") + Self.vm("web1", image: "/img/other.qcow2")
        #expect(error(text) == "vms[1].name: duplicate VM name \"web1\"")
    }

    @Test func sharedImagePathIsRefused() {
        let text = Self.minimal + Self.vm("a") + Self.vm("b", image: "/img/a.qcow2")
        #expect(error(text) == "vms[1].disks[0].image: \"/img/a.qcow2\" is already used by vms[0].disks[0].image")
    }

    @Test func detectionMustCoverThreeHeartbeats() {
        let text = Self.minimal + "[timeouts]\nheartbeat_interval_ms = 1000\ndetection_ms = 2500\n"
        #expect(error(text) == "timeouts.detection_ms: 2500 ms is less than 3 × heartbeat_interval_ms (3000 ms); one lost packet would look like a dead peer")
    }

    @Test func moreVMsThanTheLimit() {
        let text = Self.minimal + "[limits]\nmax_vms = 2\n" + Self.vm("a") + Self.vm("b") + Self.vm("c")
        #expect(error(text) == "vms: 3 VMs exceed limits.max_vms (2)")
    }

    @Test func twentyFiveVMsAreFineAndTwentySixAreNot() throws {
        let many = (0..<25).map { Self.vm("vm\($0)") }.joined()
        #expect(try ClusterConfiguration.parse(Self.minimal + many).vms.count == 25)
        #expect(error(Self.minimal + many + Self.vm("vm25")) == "vms: 26 VMs exceed limits.max_vms (25)")
    }

    @Test func leaseTooShortForRenewals() {
        let text = Self.minimal + "[timeouts]\nwitness_lease_ms = 1000\n"
        #expect(error(text).hasPrefix("timeouts.witness_lease_ms: 1000 ms leaves 798 ms of primary I/O"))
    }

    @Test func suspendLatencyEatsTheFenceWindow() {
        let text = Self.minimal + "[timeouts]\nsuspend_latency_ms = 2500\nwitness_lease_ms = 10000\n"
        #expect(error(text).hasPrefix("timeouts.suspend_latency_ms: with detection_ms 3000 a primary"))
    }

    @Test func absurdDriftIsRefused() {
        #expect(error(Self.minimal + "[timeouts]\nmax_clock_drift_ppm = 200000\n").hasPrefix("timeouts.max_clock_drift_ppm: 200000 exceeds 100000"))
    }

    @Test func exactlyTwoHosts() {
        let third = "\n[[hosts]]\nname = \"hostC\"\nreplication_address = \"10.0.0.3:7789\"\nheartbeat_addresses = [\"10.0.0.3:7788\"]\n"
        #expect(error(Self.minimal + third) == "hosts: exactly 2 hosts are required, found 3")
    }

    @Test func heartbeatNetworkCountsMustMatch() {
        let text = Self.minimal.replacingOccurrences(of: "[\"10.0.0.2:7788\"]", with: "[\"10.0.0.2:7788\", \"10.1.0.2:7788\"]")
        #expect(error(text).hasPrefix("hosts[1].heartbeat_addresses: 2 networks, but hosts[0] has 1"))
    }

    @Test func badAddressesAndEnums() {
        #expect(error(Self.minimal.replacingOccurrences(of: "10.0.0.1:7789", with: "10.0.0.1")).hasPrefix("hosts[0].replication_address: \"10.0.0.1\" is not host:port"))
        #expect(error(Self.minimal.replacingOccurrences(of: "10.0.0.1:7789", with: "10.0.0.1:99999")) == "hosts[0].replication_address: \"10.0.0.1:99999\" has no valid port (1-65535)")
        #expect(error(Self.minimal + "[nbd]\nsocket_mode = \"0999\"\n") == "nbd.socket_mode: \"0999\" is not an octal mode like \"0660\"")
        #expect(error(Self.minimal + Self.vm("a").replacingOccurrences(of: "name = \"a\"", with: "name = \"a\"\nfailback = \"sometimes\"")) == "vms[0].failback: \"sometimes\" is not one of automatic, manual")
    }

    /// `[metrics] listen`: off unless set; a bad address or key is one line naming it.
    @Test func metricsListen() throws {
        #expect(try ClusterConfiguration.parse(Self.minimal).metricsListen == nil)
        let on = try ClusterConfiguration.parse(Self.minimal + "[metrics]\nlisten = \"0.0.0.0:9470\"\n")
        #expect(on.metricsListen == EndpointAddress(host: "0.0.0.0", port: 9470))
        #expect(error(Self.minimal + "[metrics]\nlisten = \"9470\"\n").hasPrefix("metrics.listen: "))
        #expect(error(Self.minimal + "[metrics]\nport = 9470\n").hasPrefix("metrics.port"))
    }

    @Test func diskNeedsExactlyOneSelector() {
        let both = Self.minimal + Self.vm("a").replacingOccurrences(of: "target = \"vda\"", with: "target = \"vda\"\nsource = \"/x\"")
        #expect(error(both) == "vms[0].disks[0].source: give target or source, not both")
        let none = Self.minimal + Self.vm("a").replacingOccurrences(of: "target = \"vda\"\n", with: "")
        #expect(error(none).hasPrefix("vms[0].disks[0].target: give either target"))
    }

    @Test func relativeKeyFileIsRefused() {
        #expect(error(Self.minimal.replacingOccurrences(of: "\"/etc/vmha/key\"", with: "\"key\"")) == "cluster.key_file: \"key\" is not an absolute path")
    }

    @Test func syntaxErrorNamesTheLine() {
        #expect(error("[cluster]\nname = \n").hasPrefix("<toml>: syntax error at line 2"))
    }
}
