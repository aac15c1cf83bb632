import ReplicationPolicy

/// Turns the TOML tree into a `ClusterConfiguration`, section by section, then checks the rules
/// that span sections (names, limits, timing).
struct ConfigurationParser {
    var root: ConfigTable

    mutating func parse() throws(ConfigurationError) -> ClusterConfiguration {
        var cluster = try root.table("cluster")
        let name = try cluster.string("name")
        let keyFile = try cluster.string("key_file")
        let stateDirectory = try cluster.optionalString("state_directory") ?? "/var/lib/vmha"
        let splitBrainText = try cluster.optionalString("split_brain") ?? SplitBrainPolicy.disconnect.rawValue
        guard let splitBrainPolicy = SplitBrainPolicy(rawValue: splitBrainText) else {
            throw ConfigurationError(
                key: cluster.keyPath("split_brain"),
                problem: "\"\(splitBrainText)\" is not one of \(SplitBrainPolicy.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        try cluster.rejectUnknownKeys()

        let hosts = try parseHosts()
        let witness = try parseWitness()
        let limits = try parseLimits()
        let timeouts = try parseTimeouts(witnessConfigured: witness != nil)
        let nbd = try parseNBD()
        let metricsListen = try parseMetrics()
        let console = try parseConsole()
        let vms = try parseVMs(hostNames: hosts.map(\.name), limits: limits)
        let resync = try parseResync()
        try root.rejectUnknownKeys()

        for (label, path) in [("cluster.key_file", keyFile), ("cluster.state_directory", stateDirectory),
                              ("nbd.socket_directory", nbd.socketDirectory)] where !path.hasPrefix("/") {
            throw ConfigurationError(key: label, problem: "\"\(path)\" is not an absolute path")
        }
        var configuration = ClusterConfiguration(
            clusterName: name, keyFile: keyFile, stateDirectory: stateDirectory, hosts: hosts, witness: witness,
            vms: vms, limits: limits, timeouts: timeouts, nbd: nbd, splitBrainPolicy: splitBrainPolicy, metricsListen: metricsListen,
            console: console)
        configuration.resync = resync
        return configuration
    }

    /// `[resync]`: rates in bytes per second (at least 1 MiB/s), the latency target in ms.
    private mutating func parseResync() throws(ConfigurationError) -> ClusterConfiguration.Resync {
        var resync = ClusterConfiguration.Resync()
        guard var table = try root.optionalTable("resync") else { return resync }
        if let max = try table.optionalInt("max_rate") {
            guard max >= 1 << 20 else { throw ConfigurationError(key: table.keyPath("max_rate"), problem: "\(max) bytes/s is below 1 MiB/s") }
            resync.maxRate = UInt64(max)
        }
        resync.minRate = UInt64(try table.int("min_rate", default: Int(resync.minRate), minimum: 1 << 20))
        if let max = resync.maxRate, resync.minRate > max {
            throw ConfigurationError(key: table.keyPath("min_rate"), problem: "\(resync.minRate) exceeds max_rate (\(max))")
        }
        if let target = try table.optionalInt("latency_target_ms") {
            guard target >= 1 else { throw ConfigurationError(key: table.keyPath("latency_target_ms"), problem: "\(target) is below the minimum 1") }
            resync.latencyTarget = .milliseconds(target)
        }
        try table.rejectUnknownKeys()
        return resync
    }

    /// `[console]` (docs/console.md): off unless `listen` is set; a token file is then required,
    /// TLS needs both files.
    private mutating func parseConsole() throws(ConfigurationError) -> ClusterConfiguration.Console? {
        guard var table = try root.optionalTable("console") else { return nil }
        let listen = try table.optionalString("listen")
        let tokenFile = try table.optionalString("token_file")
        let certificate = try table.optionalString("tls_certificate")
        let key = try table.optionalString("tls_key")
        try table.rejectUnknownKeys()
        guard let listen else {
            if tokenFile != nil || certificate != nil || key != nil {
                throw ConfigurationError(key: table.keyPath("listen"), problem: "required key is missing (the console is off without it)")
            }
            return nil
        }
        let address = try address(listen, key: table.keyPath("listen"))
        guard let tokenFile else {
            throw ConfigurationError(key: table.keyPath("token_file"), problem: "required key is missing (no anonymous access to the console)")
        }
        for (name, path) in [("token_file", tokenFile), ("tls_certificate", certificate), ("tls_key", key)] {
            if let path, !path.hasPrefix("/") { throw ConfigurationError(key: table.keyPath(name), problem: "\"\(path)\" is not an absolute path") }
        }
        if (certificate == nil) != (key == nil) {
            throw ConfigurationError(key: table.keyPath(certificate == nil ? "tls_certificate" : "tls_key"), problem: "TLS needs both tls_certificate and tls_key")
        }
        return ClusterConfiguration.Console(listen: address, tokenFile: tokenFile, tlsCertificate: certificate, tlsKey: key)
    }

    /// `[metrics] listen = "ADDR:PORT"` (docs/observability.md; 9470 is the documented port).
    private mutating func parseMetrics() throws(ConfigurationError) -> EndpointAddress? {
        guard var table = try root.optionalTable("metrics") else { return nil }
        let text = try table.optionalString("listen")
        try table.rejectUnknownKeys()
        guard let text else { return nil }
        return try address(text, key: table.keyPath("listen"))
    }

    private func address(_ text: String, key: String) throws(ConfigurationError) -> EndpointAddress {
        switch EndpointAddress.parse(text) {
        case .success(let address): return address
        case .failure(let problem): throw ConfigurationError(key: key, problem: problem.message)
        }
    }

    private mutating func parseHosts() throws(ConfigurationError) -> [HostConfiguration] {
        guard let tables = try root.optionalTableArray("hosts") else {
            throw ConfigurationError(key: "hosts", problem: "required key is missing (two [[hosts]] tables)")
        }
        guard tables.count == 2 else {
            throw ConfigurationError(key: "hosts", problem: "exactly 2 hosts are required, found \(tables.count)")
        }
        var hosts: [HostConfiguration] = []
        for var table in tables {
            let name = try table.string("name")
            let replication = try address(
                try table.string("replication_address"), key: table.keyPath("replication_address"))
            let heartbeatTexts = try table.stringArray("heartbeat_addresses")
            guard !heartbeatTexts.isEmpty else {
                throw ConfigurationError(
                    key: table.keyPath("heartbeat_addresses"), problem: "at least one heartbeat address is required")
            }
            var heartbeats: [EndpointAddress] = []
            for (index, text) in heartbeatTexts.enumerated() {
                heartbeats.append(try address(text, key: "\(table.keyPath("heartbeat_addresses"))[\(index)]"))
            }
            let uri = try table.optionalString("libvirt_uri") ?? "qemu:///system"
            let migrationURI = try table.optionalString("migration_uri")
            let typeText = try table.optionalString("domain_type") ?? "kvm"
            guard let domainType = HostConfiguration.DomainType(rawValue: typeText) else {
                throw ConfigurationError(
                    key: table.keyPath("domain_type"), problem: "\"\(typeText)\" is not one of kvm, qemu")
            }
            var capacity = HostConfiguration.Capacity()
            if var capacityTable = try table.optionalTable("capacity") {
                capacity.vcpus = try capacityTable.optionalInt("vcpus")
                capacity.memoryMiB = try capacityTable.optionalInt("memory_mib")
                for (key, value) in [("vcpus", capacity.vcpus), ("memory_mib", capacity.memoryMiB)] {
                    if let value, value <= 0 {
                        throw ConfigurationError(key: capacityTable.keyPath(key), problem: "must be positive, found \(value)")
                    }
                }
                try capacityTable.rejectUnknownKeys()
            }
            let checks = try parseHostChecks(&table)
            try table.rejectUnknownKeys()
            if hosts.contains(where: { $0.name == name }) {
                throw ConfigurationError(key: table.keyPath("name"), problem: "duplicate host name \"\(name)\"")
            }
            hosts.append(
                HostConfiguration(
                    name: name, replicationAddress: replication, heartbeatAddresses: heartbeats, libvirtURI: uri,
                    migrationURI: migrationURI, domainType: domainType, capacity: capacity, checks: checks))
        }
        // The heartbeat codec pairs networks by index, so both hosts need the same number of them.
        if hosts[0].heartbeatAddresses.count != hosts[1].heartbeatAddresses.count {
            throw ConfigurationError(
                key: "hosts[1].heartbeat_addresses",
                problem: "\(hosts[1].heartbeatAddresses.count) networks, but hosts[0] has \(hosts[0].heartbeatAddresses.count); each network needs an address on both hosts")
        }
        return hosts
    }

    private mutating func parseWitness() throws(ConfigurationError) -> ClusterConfiguration.Witness? {
        guard var table = try root.optionalTable("witness") else { return nil }
        let witness = ClusterConfiguration.Witness(
            address: try address(try table.string("address"), key: table.keyPath("address")))
        try table.rejectUnknownKeys()
        return witness
    }

    private mutating func parseLimits() throws(ConfigurationError) -> ClusterConfiguration.Limits {
        var limits = ClusterConfiguration.Limits()
        guard var table = try root.optionalTable("limits") else { return limits }
        limits.maxVMs = try table.int("max_vms", default: limits.maxVMs, minimum: 1)
        limits.concurrentStarts = try table.int("concurrent_starts", default: limits.concurrentStarts, minimum: 1)
        try table.rejectUnknownKeys()
        return limits
    }

    private mutating func parseTimeouts(witnessConfigured: Bool) throws(ConfigurationError) -> ClusterConfiguration.Timeouts {
        var timeouts = ClusterConfiguration.Timeouts()
        if var table = try root.optionalTable("timeouts") {
            timeouts.heartbeatInterval = .milliseconds(try table.int("heartbeat_interval_ms", default: 500, minimum: 10))
            timeouts.detection = .milliseconds(try table.int("detection_ms", default: 3000, minimum: 30))
            timeouts.witnessLease = .milliseconds(try table.int("witness_lease_ms", default: 4000, minimum: 30))
            timeouts.maxClockDriftPPM = try table.int("max_clock_drift_ppm", default: 1000, minimum: 0)
            timeouts.suspendLatency = .milliseconds(try table.int("suspend_latency_ms", default: 200, minimum: 0))
            timeouts.restartGrace = .milliseconds(try table.int("restart_grace_ms", default: 30000, minimum: 0))
            try table.rejectUnknownKeys()
        }
        let interval = timeouts.heartbeatInterval
        if timeouts.detection < interval * 3 {
            throw ConfigurationError(
                key: "timeouts.detection_ms",
                problem: "\(ms(timeouts.detection)) ms is less than 3 × heartbeat_interval_ms (\(ms(interval * 3)) ms); one lost packet would look like a dead peer")
        }
        if timeouts.maxClockDriftPPM > 100_000 {
            throw ConfigurationError(
                key: "timeouts.max_clock_drift_ppm",
                problem: "\(timeouts.maxClockDriftPPM) exceeds 100000 (10 %); no lease argument holds with clocks that bad")
        }
        let timing = timeouts.leaseTiming
        if let problem = timing.lesseeWindowProblem {
            throw ConfigurationError(key: "timeouts.witness_lease_ms", problem: problem)
        }
        let fence = timing.fenceTimeout(detection: timeouts.detection)
        if fence < interval * 2 {
            throw ConfigurationError(
                key: "timeouts.suspend_latency_ms",
                problem: "with detection_ms \(ms(timeouts.detection)) a primary that stops hearing its peer would have to suspend I/O after \(ms(fence)) ms, less than 2 heartbeats; raise detection_ms or lower suspend_latency_ms")
        }
        return timeouts
    }

    private mutating func parseNBD() throws(ConfigurationError) -> ClusterConfiguration.NBD {
        var nbd = ClusterConfiguration.NBD()
        guard var table = try root.optionalTable("nbd") else { return nbd }
        nbd.socketDirectory = try table.optionalString("socket_directory") ?? nbd.socketDirectory
        if let modeText = try table.optionalString("socket_mode") {
            // A string, not an integer: TOML has 0o660 but people write 660 and mean octal.
            guard modeText.count <= 4, let mode = Int(modeText, radix: 8), mode <= 0o777 else {
                throw ConfigurationError(
                    key: table.keyPath("socket_mode"), problem: "\"\(modeText)\" is not an octal mode like \"0660\"")
            }
            nbd.socketMode = mode
        }
        nbd.socketGroup = try table.optionalString("socket_group")
        try table.rejectUnknownKeys()
        return nbd
    }

    private mutating func parseVMs(hostNames: [String], limits: ClusterConfiguration.Limits) throws(ConfigurationError) -> [VMConfiguration] {
        let tables = try root.optionalTableArray("vms") ?? []
        if tables.count > limits.maxVMs {
            throw ConfigurationError(
                key: "vms", problem: "\(tables.count) VMs exceed limits.max_vms (\(limits.maxVMs))")
        }
        var vms: [VMConfiguration] = []
        var imagePaths: [String: String] = [:]
        for var table in tables {
            let name = try table.string("name")
            if vms.contains(where: { $0.name == name }) {
                throw ConfigurationError(key: table.keyPath("name"), problem: "duplicate VM name \"\(name)\"")
            }
            let xml = try table.string("domain_xml")
            let priority = try table.optionalInt("priority") ?? 0
            let preferred = try table.optionalString("preferred_host")
            if let preferred, !hostNames.contains(preferred) {
                throw ConfigurationError(
                    key: table.keyPath("preferred_host"),
                    problem: "\"\(preferred)\" is not one of the hosts (\(hostNames.joined(separator: ", ")))")
            }
            let failbackText = try table.optionalString("failback") ?? "manual"
            guard let failback = VMConfiguration.Failback(rawValue: failbackText) else {
                throw ConfigurationError(
                    key: table.keyPath("failback"), problem: "\"\(failbackText)\" is not one of automatic, manual")
            }
            guard let diskTables = try table.optionalTableArray("disks"), !diskTables.isEmpty else {
                throw ConfigurationError(key: table.keyPath("disks"), problem: "at least one replicated disk is required")
            }
            var disks: [VMConfiguration.Disk] = []
            for var diskTable in diskTables {
                let target = try diskTable.optionalString("target")
                let source = try diskTable.optionalString("source")
                let selector: VMConfiguration.Disk.Selector
                switch (target, source) {
                case (let target?, nil): selector = .target(target)
                case (nil, let source?): selector = .source(source)
                case (nil, nil):
                    throw ConfigurationError(
                        key: diskTable.keyPath("target"), problem: "give either target (e.g. \"vda\") or source (the disk's path in the domain XML)")
                case (.some, .some):
                    throw ConfigurationError(key: diskTable.keyPath("source"), problem: "give target or source, not both")
                }
                let image = try diskTable.string("image")
                let metadata = try diskTable.string("metadata")
                try diskTable.rejectUnknownKeys()
                // Two exports writing one file would corrupt it silently: refuse early.
                for (label, path) in [("image", image), ("metadata", metadata)] {
                    if let owner = imagePaths[path] {
                        throw ConfigurationError(
                            key: diskTable.keyPath(label), problem: "\"\(path)\" is already used by \(owner)")
                    }
                    imagePaths[path] = diskTable.keyPath(label)
                }
                disks.append(VMConfiguration.Disk(selector: selector, imagePath: image, metadataPath: metadata))
            }
            let checks = try parseChecks(&table)
            let recovery = try parseRecovery(&table)
            try table.rejectUnknownKeys()
            vms.append(
                VMConfiguration(
                    name: name, domainXMLPath: xml, disks: disks, priority: priority, preferredHost: preferred,
                    failback: failback, checks: checks, recovery: recovery))
        }
        return vms
    }
}

extension ConfigurationParser {
    /// `[[vms.checks]]` (docs/config.md): kind, what it probes, and when it counts as failed.
    fileprivate func parseChecks(_ vm: inout ConfigTable) throws(ConfigurationError) -> [VMConfiguration.Check] {
        var checks: [VMConfiguration.Check] = []
        for var table in try vm.optionalTableArray("checks") ?? [] {
            let kind = try table.string("kind")
            let probe: VMConfiguration.Check.Probe
            let defaultName: String
            switch kind {
            case "script":
                probe = .script(try scriptCommand(&table))
                defaultName = "script"
            case "tcp":
                let text = try table.string("address")
                let address = try address(text, key: table.keyPath("address"))
                probe = .tcp(address)
                defaultName = "tcp \(text)"
            case "ping":
                let host = try table.string("address")
                guard !host.isEmpty, !host.hasPrefix("-"), !host.contains(where: { $0.isWhitespace }) else {
                    throw ConfigurationError(key: table.keyPath("address"), problem: "\"\(host)\" is not a host name or address")
                }
                probe = .ping(host)
                defaultName = "ping \(host)"
            case "agent":
                // Nothing to say: libvirt knows the domain's agent channel.
                probe = .agent
                defaultName = "agent"
            default:
                throw ConfigurationError(key: table.keyPath("kind"), problem: "\"\(kind)\" is not one of script, tcp, ping, agent")
            }
            let name = try checkName(&table, default: defaultName, taken: checks.map(\.name))
            let (interval, timeout, thresholds) = try checkTiming(&table, interval: 5000, timeout: 2000, startupGrace: 60_000)
            try table.rejectUnknownKeys()
            checks.append(VMConfiguration.Check(name: name, probe: probe, interval: interval, timeout: timeout, thresholds: thresholds))
        }
        return checks
    }

    /// `[[hosts.checks]]` (docs/config.md): an interface that must be up, or a script.
    fileprivate func parseHostChecks(_ host: inout ConfigTable) throws(ConfigurationError) -> [HostConfiguration.Check] {
        var checks: [HostConfiguration.Check] = []
        for var table in try host.optionalTableArray("checks") ?? [] {
            let kind = try table.string("kind")
            let probe: HostConfiguration.Check.Probe
            let defaultName: String
            switch kind {
            case "interface":
                let interface = try table.string("interface")
                // IFNAMSIZ is 16 with the NUL; a name never holds '/' or blanks.
                guard (1...15).contains(interface.utf8.count), !interface.contains(where: { $0 == "/" || $0.isWhitespace }) else {
                    throw ConfigurationError(key: table.keyPath("interface"), problem: "\"\(interface)\" is not an interface name (1–15 characters, no '/' or blanks)")
                }
                probe = .interface(interface)
                defaultName = "interface \(interface)"
            case "script":
                probe = .script(try scriptCommand(&table))
                defaultName = "script"
            default:
                throw ConfigurationError(key: table.keyPath("kind"), problem: "\"\(kind)\" is not one of interface, script")
            }
            let name = try checkName(&table, default: defaultName, taken: checks.map(\.name))
            let (interval, timeout, thresholds) = try checkTiming(&table, interval: 2000, timeout: 1000, startupGrace: 0)
            try table.rejectUnknownKeys()
            checks.append(HostConfiguration.Check(name: name, probe: probe, interval: interval, timeout: timeout, thresholds: thresholds))
        }
        return checks
    }

    /// A script check's command: not blank.
    fileprivate func scriptCommand(_ table: inout ConfigTable) throws(ConfigurationError) -> String {
        let command = try table.string("command")
        guard command.contains(where: { !$0.isWhitespace }) else {
            throw ConfigurationError(key: table.keyPath("command"), problem: "an empty command")
        }
        return command
    }

    /// `name`, else the kind's default; unique among the VM's (or host's) checks.
    fileprivate func checkName(_ table: inout ConfigTable, default defaultName: String, taken: [String]) throws(ConfigurationError) -> String {
        let name = try table.optionalString("name") ?? defaultName
        if taken.contains(name) {
            throw ConfigurationError(key: table.keyPath("name"), problem: "two checks named \"\(name)\" (give each a name)")
        }
        return name
    }

    /// A check's interval, timeout and thresholds, with the kind's defaults (ms).
    fileprivate func checkTiming(
        _ table: inout ConfigTable, interval: Int, timeout: Int, startupGrace: Int
    ) throws(ConfigurationError) -> (Duration, Duration, CheckThresholds) {
        let interval = try table.int("interval_ms", default: interval, minimum: 100)
        // An interval shorter than the default timeout shortens the default: only an explicit
        // timeout longer than its interval is an error.
        let timeout = try table.int("timeout_ms", default: min(timeout, interval), minimum: 10)
        guard timeout <= interval else {
            throw ConfigurationError(key: table.keyPath("timeout_ms"), problem: "\(timeout) exceeds interval_ms (\(interval))")
        }
        let thresholds = CheckThresholds(
            failuresBeforeAction: try table.int("failures", default: 3, minimum: 1),
            startupGrace: .milliseconds(try table.int("startup_grace_ms", default: startupGrace, minimum: 0)),
            flapChanges: try table.int("flap_changes", default: 4, minimum: 2),
            flapWindow: .milliseconds(try table.int("flap_window_ms", default: 600_000, minimum: 1000)))
        return (.milliseconds(interval), .milliseconds(timeout), thresholds)
    }

    /// `[vms.recovery]`: restarts before a move, their window, the hold-down after a move.
    fileprivate func parseRecovery(_ vm: inout ConfigTable) throws(ConfigurationError) -> RecoveryLimits {
        guard var table = try vm.optionalTable("recovery") else { return RecoveryLimits() }
        let limits = RecoveryLimits(
            restarts: try table.int("restarts", default: 3, minimum: 0),
            window: .milliseconds(try table.int("window_ms", default: 600_000, minimum: 1000)),
            holdDown: .milliseconds(try table.int("hold_down_ms", default: 1_800_000, minimum: 0)))
        try table.rejectUnknownKeys()
        return limits
    }
}

/// Whole milliseconds of a duration, for messages.
func ms(_ duration: Duration) -> Int64 {
    let (seconds, attoseconds) = duration.components
    return seconds * 1000 + attoseconds / 1_000_000_000_000_000
}
