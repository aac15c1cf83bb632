import Logging
import Replication
import ServiceLifecycle
import Sockets
import Uring
import Volume

/// One replicated disk for the daemon's lifetime: opens the volume, serves its NBD export until
/// graceful shutdown, then closes the volume cleanly (bitmap persisted, activity log emptied), so
/// the next start needs no recovery.
struct VolumeService: Service {
    let spec: ExportSpec
    let socket: NBDServer.SocketOptions
    let activityLogExtents: Int
    /// The peer's replication address and link settings (nil: this volume is not replicated).
    let replication: (peer: TCPSocket.Address, options: ReplicationOptions)?
    let ring: IOUring
    let logger: Logger

    func run() async throws {
        var configuration = LocalVolume.Configuration(
            name: spec.name, imagePath: spec.imagePath, metadataPath: spec.metadataPath)
        configuration.activityLog.hotExtentLimit = activityLogExtents
        let volume = try await LocalVolume.open(configuration, ring: ring, logger: logger)
        let server = try NBDServer(volume: volume, socket: socket, logger: logger)
        let replicator = replication.map { PrimaryReplication(volume: volume, peer: $0.peer, options: $0.options, logger: logger) }
        do {
            try await volume.promote()
            try await cancelWhenGracefulShutdown { [ring] in
                try await withThrowingDiscardingTaskGroup { group in
                    group.addTask(executorPreference: ring) { try await server.run() }
                    if let replicator {
                        group.addTask(executorPreference: ring) { await replicator.run() }
                    }
                }
            }
        } catch {
            try? await volume.close()
            throw error
        }
        try await volume.close()
    }
}
