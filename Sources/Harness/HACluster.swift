import Cluster
import Foundation
import Libvirt
import Logging
import SystemCalls

#if canImport(Glibc)
import Glibc
#endif

/// A complete vmha cluster on simulated hosts: `vmhad --config` on hosts A and B (the first two
/// of a 3-host `TestCluster`), the witness (`vmha witness`) on host C, and the test guest's VMs,
/// each with its own replicated disks. By default one VM (`vm1`, the `records` workload on one
/// 64 MiB disk) preferring A. Used by the HA tests, `vmha demo` and perf/.
public final class HACluster: @unchecked Sendable {
    /// One configured VM: a ``TestGuest`` domain with its replicated disks.
    public struct VM: Sendable {
        /// One replicated disk, created alike on both hosts (vmhad requires the same export size
        /// on both: docs/config.md, "Preparing the images").
        public struct Disk: Sendable {
            /// `raw` (a sparse file) or `qcow2` (the domain's driver type too).
            public var format: String
            /// The raw file's size, or the qcow2 image's virtual size.
            public var bytes: UInt64
            public init(format: String = "raw", bytes: UInt64) {
                self.format = format
                self.bytes = bytes
            }
        }

        public var name: String
        public var priority: Int
        /// 0 (host A) or 1 (host B).
        public var preferredHost: Int
        public var workload: GuestDomain.Workload
        /// Targets vda, vdb, … in this order; with several, `records` writes to each (``GuestInit``).
        public var disks: [Disk]
        /// The first disk's size.
        public var diskBytes: UInt64 {
            get { disks[0].bytes }
            set { disks[0].bytes = newValue }
        }
        /// The test guest does not boot with 64 MiB or less (the cloud kernel's decompression).
        public var memoryMiB: Int
        /// `manual` or `automatic`.
        public var failback: String
        /// More of the VM's entry, after its disk (`[[vms.checks]]`, `[vms.recovery]`).
        public var extraTOML: String
        /// The guest's agent and control ports (``GuestDomain/channels``, ``sendGuestControl(vm:_:timeout:)``).
        public var channels: Bool
        /// The guest's NIC on each host's `vmbr0` with this `ADDRESS/PREFIX` and its TCP service on
        /// port 80 (``GuestNetwork``, ``GuestDomain/address``); nil: no NIC.
        public var address: String?

        public init(
            name: String, priority: Int = 0, preferredHost: Int = 0, workload: GuestDomain.Workload = .idle,
            diskBytes: UInt64 = 4 << 20, memoryMiB: Int = 72, failback: String = "manual", extraTOML: String = "", channels: Bool = false,
            address: String? = nil, disks: [Disk]? = nil
        ) {
            self.disks = disks ?? [Disk(bytes: diskBytes)]
            self.extraTOML = extraTOML
            self.channels = channels
            self.address = address
            self.name = name
            self.priority = priority
            self.preferredHost = preferredHost
            self.workload = workload
            self.memoryMiB = memoryMiB
            self.failback = failback
        }
    }

    public let cluster: TestCluster
    public let guest: TestGuest
    public let vmhad: String
    public let vmha: String
    public let vms: [VM]
    /// Each VM's serial console, by VM name.
    public let serials: [String: SerialLog]
    public let configPaths: [String]
    public let controlSockets: [String]
    public let witnessIP: String
    public let key: String
    /// The console's login token (`console.token_file`'s line), used when `consolePort` is set.
    public let consoleToken: String
    public private(set) var daemons: [NamespacedDaemon?] = [nil, nil]
    public private(set) var witness: NamespacedDaemon?
    private var logIndex = 0

    public var scratch: String { cluster.scratch }
    public var hostA: SimulatedHost { cluster.hosts[0] }
    public var hostB: SimulatedHost { cluster.hosts[1] }
    /// The first VM's serial console.
    public var serial: SerialLog { serials[vms[0].name]! }

    /// One `records` VM (`vm1`) preferring A, with the `failback` policy given.
    public convenience init(
        cluster: TestCluster, guest: TestGuest, vmhad: String, vmha: String, diskBytes: UInt64 = 64 << 20,
        failback: String = "manual", ownCapacity: [Int: (vcpus: Int, memoryMiB: Int)] = [:], detectionMs: Int? = nil,
        metricsPort: Int? = nil, consolePort: Int? = nil, hostTOML: [Int: String] = [:]
    ) throws {
        try self.init(
            cluster: cluster, guest: guest, vmhad: vmhad, vmha: vmha,
            vms: [VM(name: "vm1", workload: .records, diskBytes: diskBytes, memoryMiB: 192, failback: failback)],
            ownCapacity: ownCapacity, detectionMs: detectionMs, metricsPort: metricsPort, consolePort: consolePort, hostTOML: hostTOML)
    }

    /// Writes the key, the domain XMLs and one configuration per host (the hosts share /tmp, so
    /// their files differ only in paths); starts nothing.
    /// - Parameters:
    ///   - capacity: host i's `[hosts.capacity]` in both configurations (nil: what libvirt reports).
    ///   - ownCapacity: a `capacity` override written only into that host's own configuration
    ///     (index 0 = A, 1 = B), so the other host learns it from heartbeats.
    ///   - concurrentStarts: `limits.concurrent_starts` (nil: the default).
    ///   - detectionMs: `timeouts.detection_ms` (nil: the default).
    ///   - metricsPort: `metrics.listen` on every address of the host (nil: off).
    ///   - consolePort: `console.listen` on every address of the host, its token in ``consoleToken`` (nil: off).
    ///   - hostTOML: more of host i's `[[hosts]]` table (its `[[hosts.checks]]`), in both files.
    public init(
        cluster: TestCluster, guest: TestGuest, vmhad: String, vmha: String, vms: [VM],
        capacity: [Resources?] = [nil, nil], ownCapacity: [Int: (vcpus: Int, memoryMiB: Int)] = [:],
        concurrentStarts: Int? = nil, detectionMs: Int? = nil, metricsPort: Int? = nil, consolePort: Int? = nil,
        hostTOML: [Int: String] = [:], maxVMs: Int? = nil
    ) throws {
        precondition(cluster.hosts.count >= 3, "hosts A, B and the witness host C")
        precondition(!vms.isEmpty && capacity.count == 2)
        self.cluster = cluster
        self.guest = guest
        self.vmhad = vmhad
        self.vmha = vmha
        self.vms = vms
        let (a, b, c) = (cluster.hosts[0], cluster.hosts[1], cluster.hosts[2])
        let scratch = cluster.scratch
        // The witness on host C at one address both hosts route to over their own link to C.
        witnessIP = "10.99.\(Int.random(in: 1...250)).9"
        try Shell.run(["ip", "-n", c.netns, "addr", "add", "\(witnessIP)/32", "dev", "lo"])
        try Shell.run(["ip", "-n", a.netns, "route", "add", "\(witnessIP)/32", "via", cluster.address(of: 2, toward: 0)])
        try Shell.run(["ip", "-n", b.netns, "route", "add", "\(witnessIP)/32", "via", cluster.address(of: 2, toward: 1)])
        let key = "\(scratch)/cluster.key"
        self.key = key
        try Data((0..<32).map { _ in UInt8.random(in: 0...255) }).write(to: URL(fileURLWithPath: key))
        _ = try? Syscall.call("chmod") { chmod(key, 0o600) }
        consoleToken = (0..<24).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        let tokenFile = "\(scratch)/console.token"
        try "\(consoleToken)\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
        _ = try? Syscall.call("chmod") { chmod(tokenFile, 0o600) }

        if vms.contains(where: { $0.address != nil }) {
            for host in [a, b] { try GuestNetwork.create(on: host) }
        }

        // Each VM names a file disk; vmhad rewrites it to its NBD export on whichever host runs it.
        var serials: [String: SerialLog] = [:]
        for vm in vms {
            let serial = SerialLog(path: "\(scratch)/\(vm.name).serial.log")
            serials[vm.name] = serial
            let disks = vm.disks.indices.map { j in
                GuestDomain.Disk.file(path: "\(scratch)/\(Self.diskFileStem(vm.name, j))-original.img", format: vm.disks[j].format)
            }
            var domain = GuestDomain(name: vm.name, workload: vm.workload, disks: disks, serialLog: serial.path)
            domain.interval = 0.1
            domain.memoryMiB = vm.memoryMiB
            domain.channels = vm.channels
            domain.address = vm.address
            try domain.xml(guest: guest).write(toFile: "\(scratch)/\(vm.name).xml", atomically: true, encoding: .utf8)
        }
        self.serials = serials

        var configPaths: [String] = [], sockets: [String] = []
        for (i, host) in [a, b].enumerated() {
            let dir = "\(scratch)/\(host.name)"
            try FileManager.default.createDirectory(atPath: "\(dir)/nbd", withIntermediateDirectories: true)
            for vm in vms {
                for (j, disk) in vm.disks.enumerated() {
                    try QemuNBD.createImage(at: Self.imagePath(directory: dir, vm: vm, disk: j), bytes: disk.bytes, format: disk.format)
                }
            }
            let hostsTOML = [a, b].enumerated().map { j, h in
                let address = cluster.address(of: j, toward: 1 - j)
                let own = j == i ? ownCapacity[j].map { Resources(vcpus: $0.vcpus, memoryMiB: $0.memoryMiB) } : nil
                let capacityTOML = (own ?? capacity[j]).map { "\n[hosts.capacity]\nvcpus = \($0.vcpus)\nmemory_mib = \($0.memoryMiB)" } ?? ""
                return """
                    [[hosts]]
                    name = "\(h.name)"
                    replication_address = "\(address):7789"
                    heartbeat_addresses = ["\(address):7788"]
                    libvirt_uri = "\(h.uri)"
                    domain_type = "qemu"\(capacityTOML)
                    \(hostTOML[j] ?? "")
                    """
            }.joined(separator: "\n")
            let vmsTOML = vms.map { vm in
                """
                [[vms]]
                name = "\(vm.name)"
                domain_xml = "\(scratch)/\(vm.name).xml"
                priority = \(vm.priority)
                preferred_host = "\(cluster.hosts[vm.preferredHost].name)"
                failback = "\(vm.failback)"
                \(vm.disks.indices.map { j in
                    """
                    [[vms.disks]]
                    target = "\(Self.diskTarget(j))"
                    image = "\(Self.imagePath(directory: dir, vm: vm, disk: j))"
                    metadata = "\(dir)/\(Self.diskFileStem(vm.name, j)).meta"
                    """
                }.joined(separator: "\n"))
                \(vm.extraTOML)
                """
            }.joined(separator: "\n")
            let limitLines = [concurrentStarts.map { "concurrent_starts = \($0)\n" }, maxVMs.map { "max_vms = \($0)\n" }].compactMap { $0 }
            let limitsTOML = limitLines.isEmpty ? "" : "[limits]\n" + limitLines.joined()
            let toml = """
                [cluster]
                name = "vmha-demo"
                key_file = "\(key)"
                state_directory = "\(dir)/state"
                \(hostsTOML)
                [witness]
                address = "\(witnessIP):7790"
                \(limitsTOML)[nbd]
                socket_directory = "\(dir)/nbd"
                socket_mode = "0666"
                \(detectionMs.map { "[timeouts]\ndetection_ms = \($0)" } ?? "")
                \(metricsPort.map { "[metrics]\nlisten = \"0.0.0.0:\($0)\"" } ?? "")
                \(consolePort.map { "[console]\nlisten = \"0.0.0.0:\($0)\"\ntoken_file = \"\(tokenFile)\"" } ?? "")
                \(vmsTOML)
                """
            let path = "\(dir)/vmha.toml"
            try toml.write(toFile: path, atomically: true, encoding: .utf8)
            configPaths.append(path)
            sockets.append("\(dir)/state/control.sock")
        }
        self.configPaths = configPaths
        self.controlSockets = sockets
    }

    deinit {
        for daemon in daemons { daemon?.kill() }
        witness?.kill()
    }

    /// A VM's image on one host (the first VM's first disk by default).
    public func imagePath(host: Int, vm name: String? = nil, disk: Int = 0) -> String {
        let directory = "\(scratch)/\(cluster.hosts[host].name)"
        guard let vm = vms.first(where: { $0.name == name ?? vms[0].name }) else { return "\(directory)/\(name ?? "").img" }
        return Self.imagePath(directory: directory, vm: vm, disk: disk)
    }

    /// The libvirt target of a VM's disk j (GuestDomain names them in order).
    public static func diskTarget(_ j: Int) -> String { "vd" + String(UnicodeScalar(UInt8(ascii: "a") + UInt8(j))) }

    /// `vm1` for the first disk (the names every one-disk test had), `vm1-disk1`, … after it.
    static func diskFileStem(_ vm: String, _ j: Int) -> String { j == 0 ? vm : "\(vm)-disk\(j)" }

    static func imagePath(directory: String, vm: VM, disk j: Int) -> String {
        "\(directory)/\(diskFileStem(vm.name, j)).\(vm.disks[j].format == "raw" ? "img" : vm.disks[j].format)"
    }

    public func startWitness() throws {
        witness = try NamespacedDaemon(
            namespace: cluster.hosts[2].netns, executable: vmha,
            arguments: ["witness", "--listen", "\(witnessIP):7790", "--key-file", key], logPath: "\(scratch)/witness.log")
    }

    /// Starts (or restarts) vmhad on host 0 (A) or 1 (B); `environment` e.g. sets failpoints.
    public func startDaemon(_ host: Int, environment: [String: String] = [:]) throws {
        logIndex += 1
        let name = cluster.hosts[host].name
        daemons[host] = try NamespacedDaemon(
            namespace: cluster.hosts[host].netns, executable: vmhad,
            arguments: ["--config", configPaths[host], "--host", name], environment: environment,
            logPath: "\(scratch)/vmhad-\(name)-\(logIndex).log")
    }

    /// Starts the witness and both vmhad and waits until vm1 runs on A (its preferred host), B's
    /// replica is UpToDate (after the initial full sync) and the guest has acknowledged 5 records.
    /// `environment` goes to both vmhad.
    public func startAndWaitUntilRedundant(environment: [String: String] = [:]) async throws {
        try startWitness()
        try startDaemon(0, environment: environment)
        try startDaemon(1, environment: environment)
        try await Self.waitUntil("vm1 PRIM on A, B UpToDate", timeout: .seconds(90)) {
            vm(0)?.state == "PRIM" && vm(1)?.state == "SECOND" && vm(1)?.replica == "upToDate"
        }
        try await serial.waitForACK(after: 5, timeout: .seconds(60))
    }

    /// Host A dies hard: its vmhad, libvirtd and QEMU killed, its links down; `watch` is told, so
    /// the dead host's domain does not count as running on both. Returns the instant it died.
    public func crashHostA(watch: DualRunWatch) async throws -> ContinuousClock.Instant {
        daemons[0]?.kill()
        try hostA.crash()
        await watch.hostCrashed(0)
        return .now
    }

    /// Host A returns after ``crashHostA(watch:)`` (libvirtd, links, vmhad) while B runs the first
    /// VM; returns once A is its UpToDate secondary, with how long that took from vmhad's start.
    public func returnHostAAsSecondary(timeout: Duration = .seconds(60)) async throws -> Duration {
        try hostA.startLibvirtdInExistingNamespaces()
        try hostA.linksUp()
        let backAt = ContinuousClock.now
        try startDaemon(0)
        try await Self.waitUntil("A SECOND/upToDate, B PRIM", timeout: timeout) {
            vm(0)?.state == "SECOND" && vm(0)?.replica == "upToDate" && vm(1)?.state == "PRIM" && vm(1)?.peerReplica == "upToDate"
        }
        return backAt.duration(to: .now)
    }

    /// `vmha status --json` of one host (nil while its vmhad does not answer).
    public func status(_ host: Int) -> ClusterStatusReport? {
        guard let result = try? Self.runTool([vmha, "status", "--json", "--socket", controlSockets[host]]), result.status == 0 else { return nil }
        return try? JSONDecoder().decode(ClusterStatusReport.self, from: Data(result.output.utf8))
    }

    /// One host's events after `since` (`vmha events --no-follow --json`).
    public func events(_ host: Int, since: UInt64) throws -> [NodeEvent] {
        let result = try vmhaCommand(host, ["events", "--since", "\(since)", "--no-follow", "--json"])
        guard result.status == 0 else { throw HAClusterError("vmha events on \(cluster.hosts[host].name) failed (\(result.status)): \(result.output)") }
        return try result.output.split(separator: "\n").filter { $0.hasPrefix("{") }.map { try JSONDecoder().decode(NodeEvent.self, from: Data($0.utf8)) }
    }

    /// One VM's status on one host (the first VM's by default).
    public func vm(_ host: Int, named name: String? = nil) -> VMStatusReport? {
        status(host)?.vms.first { $0.name == name ?? vms[0].name }
    }

    /// Runs `vmha` against one host's control socket.
    public func vmhaCommand(_ host: Int, _ arguments: [String]) throws -> (status: Int32, output: String) {
        try Self.runTool([vmha] + arguments + ["--socket", controlSockets[host]])
    }

    /// Runs a program to completion; returns its exit status and output.
    public static func runTool(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// ``runTool(_:)`` on a thread of its own. A test that waits for a server in the same process
    /// (the console, `/metrics`) must not block one of Swift's pool threads: on 2 cores two such
    /// waits took both, the server's handlers (the node's actor) could not run, and the tests
    /// hung (HAServiceTests in parallel).
    public static func runToolOffPool(_ arguments: [String]) async throws -> (status: Int32, output: String) {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread { continuation.resume(with: Result { try runTool(arguments) }) }
        }
    }

    /// ``runTool(_:)`` with stdout and stderr apart (stderr through a file: two pipes read one
    /// after the other could stall the child on the second).
    public static func runToolSplit(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let errorPath = NSTemporaryDirectory() + "vmha-stderr-\(UUID().uuidString.prefix(8))"
        FileManager.default.createFile(atPath: errorPath, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: errorPath) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        let out = Pipe()
        process.standardOutput = out
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errorPath))
        try process.run()
        let output = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let errors = (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? ""
        return (process.terminationStatus, String(decoding: output, as: UTF8.self), errors)
    }

    public static func waitUntil(_ what: String, timeout: Duration, _ condition: () throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if (try? condition()) == true { return }
            try await Task.sleep(for: .milliseconds(250))
        }
        throw HAClusterError("timed out after \(timeout) waiting for \(what)")
    }

    /// Sends a ``GuestControl`` command (`agent off`, `service off`, …) to the guest of `vm` on whichever of A
    /// and B runs it; returns once the guest has applied it. The VM needs `channels`.
    public func sendGuestControl(vm name: String, _ command: String, timeout: Duration = .seconds(15)) async throws {
        var socket: String?
        for host in [hostA, hostB] where socket == nil {
            let connection = try await LibvirtConnection.open(uri: host.uri, keepAlive: nil, logger: host.logger)
            if let domain = try? await connection.domain(named: name), (try? await domain.state().isActive) == true,
               let path = GuestControl.socketPath(inLiveXML: try await domain.xmlDescription()) {
                socket = host.outsidePath(path)
            }
            await connection.close()
        }
        guard let socket else { throw HAClusterError("\(name) runs on neither host, or has no \(GuestControl.portName) port") }
        // A blocking exchange: on a thread of its own, like runToolOffPool.
        let answer = try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread { continuation.resume(with: Result { try GuestControl.send(command, socket: socket, timeout: timeout) }) }
        }
        guard answer == "ok \(command)" else { throw HAClusterError("\(name)'s guest answered '\(answer)' to '\(command)'") }
    }

    /// vmhad's and the witness's logs and each guest's console state, for a failure report.
    public func logs() -> String {
        let daemonLogs = daemons.compactMap { $0 }.map { "\($0.logPath):\n\($0.log.suffix(4000))" }
        let domains = [hostA, hostB].map { host in
            "\(host.name) domains:\n" + ((try? Shell.run(["virsh", "-q", "-c", host.uri, "list", "--all"])) ?? "(libvirtd not answering)")
        }
        return (daemonLogs + [witness.map { "witness:\n\($0.log.suffix(2000))" } ?? ""] + domains + ["guests:\n" + guestsReport()])
            .joined(separator: "\n")
    }

    /// Copies every log of the run (vmhad, witness, guest consoles) out of the scratch directory,
    /// which the teardown removes, to /var/tmp/vmha-test-failures/; returns a line naming it.
    public func keepLogs() -> String {
        let target = "/var/tmp/vmha-test-failures/\(cluster.runID)"
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: scratch)) ?? []).filter { $0.hasSuffix(".log") }
        do {
            try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
            for file in files { try FileManager.default.copyItem(atPath: "\(scratch)/\(file)", toPath: "\(target)/\(file)") }
            return "all logs of this run kept in \(target)"
        } catch {
            return "could not keep the logs in \(target): \(error)"
        }
    }

    /// One line per VM: how often its guest came up and the last line of its console, so a
    /// failure report shows which guest was stuck where.
    public func guestsReport() -> String {
        vms.map { vm in
            let lines = serials[vm.name]!.lines()
            let ready = lines.filter { $0.contains("VMHA-READY") }.count
            return "\(vm.name): VMHA-READY ×\(ready), last: \(lines.last.map { String($0.prefix(120)) } ?? "-")"
        }.joined(separator: "\n")
    }

    /// Runs `body`, then stops vmhad, the witness and `watch` on every path out of it; on failure
    /// their logs go to stderr first.
    public func run<T: Sendable>(watching watch: DualRunWatch? = nil, _ body: (HACluster) async throws -> T) async throws -> T {
        // Stopping runs in a task of its own, so a cancelled body still stops every daemon.
        do {
            let result = try await body(self)
            await Task { await watch?.stop(); await stopAll() }.value
            return result
        } catch {
            FileHandle.standardError.write(Data("\(error)\n\(logs())\n\(keepLogs())\n".utf8))
            await Task { await watch?.stop(); await stopAll() }.value
            throw error
        }
    }

    /// An HA test from start to end: the test guest, three simulated hosts (A, B and the witness's
    /// C), the cluster `make` writes on them (default: vm1 preferring A), a ``DualRunWatch`` on A
    /// and B, and `body` under ``run(watching:_:)``. Afterwards the watch must have seen no VM run
    /// on both hosts at once (a test that crashes a host says so with ``DualRunWatch/hostCrashed(_:)``).
    public static func test(
        logger: Logger,
        make: (_ cluster: TestCluster, _ guest: TestGuest, _ vmhad: String, _ vmha: String) throws -> HACluster = {
            try HACluster(cluster: $0, guest: $1, vmhad: $2, vmha: $3)
        },
        _ body: (HACluster, DualRunWatch) async throws -> Void
    ) async throws {
        let guest = try TestGuest.prepare(logger: logger)
        let vmhad = try builtProduct("vmhad"), vmha = try builtProduct("vmha")
        try await TestCluster.with(.init(hosts: 3), logger: logger) { cluster in
            let ha = try make(cluster, guest, vmhad, vmha)
            let watch = try await DualRunWatch.start(hosts: [ha.hostA, ha.hostB], logger: logger)
            try await ha.run(watching: watch) { ha in
                try await body(ha, watch)
                let violations = await watch.violations
                guard violations.isEmpty else { throw HAClusterError("a VM ran on both hosts at once: \(violations)") }
            }
        }
    }

    public func stopAll() async {
        for daemon in daemons { await daemon?.stop() }
        await witness?.stop()
    }
}

public struct HAClusterError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
