import Cluster
import Foundation
import Logging
import ServiceLifecycle
import Uring

#if canImport(Glibc)
import Glibc
#endif

/// `vmhad --config FILE --host NAME`: the HA service of one host, until graceful shutdown.
public struct ClusterService: Service {
    let node: ClusterNode
    let controlPath: String
    let logger: Logger

    public init(node: ClusterNode, controlPath: String, logger: Logger) {
        self.node = node
        self.controlPath = controlPath
        self.logger = logger
    }

    public func run() async throws {
        try await node.start()
        let control = try ControlServer(path: controlPath, node: node, ring: node.ring, logger: logger)
        logger.info("control API listening", metadata: ["socket": "\(controlPath)"])
        let node = self.node
        await withTaskGroup(of: Void.self) { group in
            group.addTask(executorPreference: node.ring) { await control.run() }
            group.addTask { await node.heartbeatLoop() }
            group.addTask { await node.controlLoop() }
            group.addTask { await node.resumeLoop() }
            group.addTask { await node.domainEventLoop() }
            group.addTask { await node.statusLoop() }
            group.addTask { await node.fenceWatchdog() }
            group.addTask { await node.checkLoop() }
            try? await gracefulShutdown()
            await node.beginStopping()
            group.cancelAll()  // ends the loops' sleeps and the libvirt event stream
        }
        await node.stop()
        logger.info("vmhad stopped cleanly")
    }
}

extension ClusterNode {
    func beginStopping() {
        stopping = true
    }
}

/// Loads what `--config` mode needs; any problem is one line and exit status 78 (EX_CONFIG),
/// before anything is started.
public struct ClusterSetup: Sendable {
    public var configuration: ClusterConfiguration
    public var host: String
    public var key: [UInt8]
    public var socketGroup: gid_t?
    /// The console's login token (`console.token_file`), when the console is on.
    public var consoleToken: String?

    public static func load(path: String, host: String?) -> Result<ClusterSetup, ConfigProblem> {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            return .failure(ConfigProblem("\(path): cannot read: \(error.localizedDescription)"))
        }
        let configuration: ClusterConfiguration
        do {
            configuration = try ClusterConfiguration.parse(text)
        } catch {
            return .failure(ConfigProblem("\(path): \(error)"))
        }
        let names = configuration.hosts.map(\.name)
        let name = host ?? ProcessInfo.processInfo.hostName
        guard names.contains(name) else {
            return .failure(ConfigProblem("\(path): --host \(name) is not one of the hosts (\(names.joined(separator: ", ")))"))
        }
        guard let keyData = FileManager.default.contents(atPath: configuration.keyFile) else {
            return .failure(ConfigProblem("\(path): cluster.key_file: cannot read \(configuration.keyFile)"))
        }
        guard keyData.count >= 16 else {
            return .failure(ConfigProblem("\(path): cluster.key_file: \(configuration.keyFile) holds \(keyData.count) bytes, a cluster key needs at least 16"))
        }
        for (i, vm) in configuration.vms.enumerated() where !FileManager.default.isReadableFile(atPath: vm.domainXMLPath) {
            return .failure(ConfigProblem("\(path): vms[\(i)].domain_xml: cannot read \(vm.domainXMLPath)"))
        }
        var group: gid_t?
        if let name = configuration.nbd.socketGroup {
            guard let entry = getgrnam(name) else { return .failure(ConfigProblem("\(path): nbd.socket_group: no such group \(name)")) }
            group = entry.pointee.gr_gid
        }
        do {
            try FileManager.default.createDirectory(atPath: configuration.stateDirectory, withIntermediateDirectories: true)
        } catch {
            return .failure(ConfigProblem("\(path): cluster.state_directory: cannot create \(configuration.stateDirectory): \(error.localizedDescription)"))
        }
        var token: String?
        if let console = configuration.console {
            do { token = try ConsoleSessions.readToken(path: console.tokenFile) } catch { return .failure(ConfigProblem("\(path): \(error)")) }
        }
        return .success(ClusterSetup(configuration: configuration, host: name, key: Array(keyData), socketGroup: group, consoleToken: token))
    }
}

public struct ConfigProblem: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
