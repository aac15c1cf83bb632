import Logging
import Replication
import ServiceLifecycle
import Sockets
import Uring
import Volume

/// The secondary side: opens every replica and accepts the primary's replication link until
/// graceful shutdown, then closes the replicas cleanly.
struct ReplicaService: Service {
    let replicas: [ReplicaSpec]
    let listen: TCPSocket.Address
    let options: ReplicationOptions
    let activityLogExtents: Int
    let ring: IOUring
    let logger: Logger

    func run() async throws {
        var volumes: [LocalVolume] = []
        do {
            for spec in replicas {
                var configuration = LocalVolume.Configuration(name: spec.name, imagePath: spec.imagePath, metadataPath: spec.metadataPath)
                configuration.activityLog.hotExtentLimit = activityLogExtents
                configuration.initialRole = .secondary
                let volume = try await LocalVolume.open(configuration, ring: ring, logger: logger)
                volumes.append(volume)
                try await volume.demote()
            }
            let server = ReplicaServer(listen: listen, volumes: volumes, ring: ring, options: options, logger: logger)
            try await cancelWhenGracefulShutdown { [ring] in
                try await withThrowingDiscardingTaskGroup { group in
                    group.addTask(executorPreference: ring) { try await server.run() }
                }
            }
        } catch {
            for volume in volumes { try? await volume.close() }
            throw error
        }
        for volume in volumes { try await volume.close() }
    }
}
