import ArgumentParser
import Cluster
import Foundation
import Crypto
import HAService
import Logging
import Replication
import ReplicationPolicy
import ServiceLifecycle
import Sockets
import Uring
import Volume

#if canImport(Glibc)
import Glibc
#endif

/// vmhad: serves each replicated disk of this host as an NBD export over a UNIX socket.
@main
struct VMHADaemon: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vmhad",
        abstract: "The vmha daemon: replicated volumes served to QEMU over NBD.",
        discussion: """
            Each --export serves one image file as an NBD export named NAME on the UNIX socket SOCKET.
            Writes go to the image through io_uring; changed regions are tracked in the dirty bitmap of
            the metadata file (default IMAGE.vmha), with an activity log that makes a crash cheap.
            SIGTERM or SIGINT shuts down gracefully: exports stop, metadata is closed cleanly.
            """,
        version: VMHAVersion.current)

    @Option(help: "Run the HA service from this cluster configuration (docs/config.md) instead of --export/--replica.")
    var config: String?

    @Option(name: .customLong("host"), help: "With --config: which configured host this is (default: the hostname).")
    var clusterHost: String?

    @Option(name: .customLong("export"), help: "NAME:IMAGE:SOCKET[:METADATA] (repeatable).")
    var exports: [ExportSpec] = []

    @Option(name: .customLong("replica"), help: "NAME:IMAGE[:METADATA]: a secondary replica of the peer's volume (repeatable).")
    var replicas: [ReplicaSpec] = []

    @Option(help: "Replicate every --export to the peer vmhad at ADDRESS:PORT (this host is their primary).")
    var replicateTo: String?

    @Option(help: "Accept the peer's replication links on ADDRESS:PORT (for the --replica volumes).")
    var listen: String?

    @Option(help: "File holding the cluster key (the peer link's shared secret).")
    var keyFile: String?

    @Option(help: "This host's name on the peer link.")
    var hostName: String = ProcessInfo.processInfo.hostName

    @Option(help: "The cluster's name (both hosts must agree).")
    var clusterName: String = "vmha"

    @Option(help: "Seconds without any frame from the peer before it is declared gone (writes then complete locally).")
    var peerTimeout: Double = 2

    @Option(help: "Upper bound on resync bandwidth, bytes per second (default: as fast as the link).")
    var resyncMaxRate: UInt64?

    @Option(help: "Resync bandwidth kept however slow the guest's writes get, bytes per second.")
    var resyncMinRate: UInt64 = 16 << 20

    @Option(help: "The guest's average write latency a resync yields to, in ms (default: no steering).")
    var resyncLatencyTargetMs: Int?

    @Flag(help: "Full syncs compare SHA-256 digests first and send only the blocks that differ.")
    var checksumResync = false

    @Option(help: "How a split brain found at reconnect is settled: disconnect (stop and report), discard-younger-primary, discard-least-changes or discard-zero-changes. Both hosts must agree; the running primary's data is never discarded.")
    var splitBrain: SplitBrainPolicy = .disconnect

    @Option(help: "Mode of the NBD socket files (octal).")
    var socketMode: String = "660"

    @Option(help: "Group of the NBD socket files (the hypervisor's QEMU group, e.g. kvm).")
    var socketGroup: String?

    @Option(help: "Activity-log extents kept hot per volume (DRBD's al-extents): more means fewer metadata writes, longer recovery resync.")
    var alExtents: Int = ActivityLog.Configuration.default.hotExtentLimit

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    @Option(help: "Serve Prometheus metrics at http://ADDRESS:PORT/metrics (with --config: overrides metrics.listen; 9470 is the documented port).")
    var metricsListen: String?

    func validate() throws {
        if let metricsListen, TCPSocket.Address(metricsListen) == nil { throw ValidationError("--metrics-listen \(metricsListen) is not ADDRESS:PORT") }
        if config != nil {
            guard exports.isEmpty && replicas.isEmpty else { throw ValidationError("--config cannot be combined with --export/--replica") }
            return
        }
        guard !exports.isEmpty || !replicas.isEmpty else { throw ValidationError("nothing to serve: give --export or --replica") }
        if let replicateTo, TCPSocket.Address(replicateTo) == nil { throw ValidationError("--replicate-to \(replicateTo) is not ADDRESS:PORT") }
        if let listen, TCPSocket.Address(listen) == nil { throw ValidationError("--listen \(listen) is not ADDRESS:PORT") }
        if !replicas.isEmpty && listen == nil { throw ValidationError("--replica needs --listen") }
        if (replicateTo != nil || listen != nil) && keyFile == nil { throw ValidationError("replication needs --key-file") }
        guard mode_t(socketMode, radix: 8) != nil else { throw ValidationError("--socket-mode \(socketMode) is not an octal mode") }
        let names = exports.map(\.name)
        guard Set(names).count == names.count else { throw ValidationError("--export names must be unique") }
    }

    func run() async throws {
        // With a configuration, also the state directory's log file (unless under journald).
        let stateDirectory = config.flatMap { try? String(contentsOfFile: $0, encoding: .utf8) }.flatMap { try? ClusterConfiguration.parse($0).stateDirectory }
        DaemonLogging.bootstrap(level: logLevel, stateDirectory: stateDirectory)
        let logger = Logger(label: "vmhad")
        if let config {
            try await runCluster(configPath: config, logger: logger)
            return
        }
        // Before any volume exists: metrics made earlier would go to the no-op backend.
        let metrics = metricsListen.flatMap { TCPSocket.Address($0) }.map { ($0, MetricsSetup.bootstrap()) }
        var group: gid_t?
        if let name = socketGroup {
            guard let entry = getgrnam(name) else { throw ValidationError("--socket-group \(name): no such group") }
            group = entry.pointee.gr_gid
        }
        let ring: IOUring
        do {
            ring = try IOUring(logger: logger)
        } catch {
            logger.critical("\(error)")
            throw ExitCode(70)
        }
        var options: ReplicationOptions?
        if let keyFile {
            let key: [UInt8]
            do {
                key = Array(try Data(contentsOf: URL(fileURLWithPath: keyFile)))
            } catch {
                throw ValidationError("--key-file \(keyFile): cannot read: \(error.localizedDescription)")
            }
            guard key.count >= 16 else { throw ValidationError("--key-file \(keyFile): a cluster key needs at least 16 bytes") }
            var o = ReplicationOptions(
                handshake: .init(hostName: hostName, clusterName: clusterName, clusterKey: SymmetricKey(data: key)))
            o.timing.timeout = .milliseconds(Int(peerTimeout * 1000))
            o.timing.keepaliveInterval = .milliseconds(Int(peerTimeout * 250))
            o.resyncMaxRate = resyncMaxRate
            o.resyncMinRate = resyncMinRate
            o.resyncLatencyTarget = resyncLatencyTargetMs.map { .milliseconds($0) }
            o.checksumFullSync = checksumResync
            o.splitBrainPolicy = splitBrain
            options = o
        }
        let replication = replicateTo.flatMap { address in options.map { (peer: TCPSocket.Address(address)!, options: $0) } }
        var services: [any Service] = exports.map { spec in
            VolumeService(
                spec: spec,
                socket: .init(path: spec.socketPath, mode: mode_t(socketMode, radix: 8)!, group: group),
                activityLogExtents: alExtents, replication: replication, ring: ring, logger: logger)
        }
        if !replicas.isEmpty, let listen, let options {
            services.append(
                ReplicaService(
                    replicas: replicas, listen: TCPSocket.Address(listen)!, options: options, activityLogExtents: alExtents,
                    ring: ring, logger: logger))
        }
        if let (address, registry) = metrics {
            services.append(MetricsService(host: address.host, port: Int(address.port), registry: registry, refresh: nil, logger: logger))
        }
        try await Self.serve(services, ring: ring, logger: logger)
    }

    /// Runs the services until graceful shutdown (SIGTERM/SIGINT), then shuts the ring down.
    static func serve(_ services: [any Service], ring: IOUring, logger: Logger) async throws {
        let serviceGroup = ServiceGroup(
            configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do {
            try await serviceGroup.run()
        } catch {
            logger.error("vmhad stopped: \(error)")
            await ring.shutdown()
            throw ExitCode.failure
        }
        await ring.shutdown()
    }
}

extension VMHADaemon {
    func runCluster(configPath: String, logger: Logger) async throws {
        let setup: ClusterSetup
        switch ClusterSetup.load(path: configPath, host: clusterHost) {
        case .success(let s): setup = s
        case .failure(let problem):
            FileHandle.standardError.write(Data("vmhad: \(problem)\n".utf8))
            throw ExitCode(78)
        }
        // The first line of a good start (a bad config is one line only): how long a start takes
        // shows from here to "cluster node started".
        logger.info("vmhad starting", metadata: ["config": "\(configPath)", "host": "\(setup.host)", "pid": "\(getpid())"])
        let ring: IOUring
        do {
            ring = try IOUring(logger: logger)
        } catch {
            logger.critical("\(error)")
            throw ExitCode(70)
        }
        // Before the node opens any volume: metrics made earlier would go to the no-op backend.
        let metricsAddress = metricsListen.flatMap { TCPSocket.Address($0) }.map { (host: $0.host, port: Int($0.port)) }
            ?? setup.configuration.metricsListen.map { (host: $0.host, port: $0.port) }
        let registry = metricsAddress.map { _ in MetricsSetup.bootstrap() }
        let node = try ClusterNode(
            config: setup.configuration, configPath: configPath, hostName: setup.host, key: setup.key, ring: ring, socketGroup: setup.socketGroup, logger: logger)
        var services: [any Service] = [ClusterService(node: node, controlPath: "\(setup.configuration.stateDirectory)/control.sock", logger: logger)]
        if let metricsAddress, let registry {
            services.append(MetricsService(
                host: metricsAddress.host, port: metricsAddress.port, registry: registry, refresh: { await node.refreshMetrics() }, logger: logger))
        }
        if let console = setup.configuration.console, let token = setup.consoleToken {
            do {
                services.append(try ConsoleService(
                    console: console, token: token, configurationText: { (try? String(contentsOfFile: configPath, encoding: .utf8)) ?? "" },
                    handle: { await node.handle($0) }, logger: logger))
            } catch {
                FileHandle.standardError.write(Data("vmhad: \(configPath): console: \(error)\n".utf8))
                throw ExitCode(78)
            }
        }
        try await Self.serve(services, ring: ring, logger: logger)
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
extension SplitBrainPolicy: ExpressibleByArgument {}
