import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
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
            """)

    @Option(name: .customLong("export"), help: "NAME:IMAGE:SOCKET[:METADATA] (repeatable).")
    var exports: [ExportSpec] = []

    @Option(help: "Mode of the NBD socket files (octal).")
    var socketMode: String = "660"

    @Option(help: "Group of the NBD socket files (the hypervisor's QEMU group, e.g. kvm).")
    var socketGroup: String?

    @Option(help: "Activity-log extents kept hot per volume (DRBD's al-extents): more means fewer metadata writes, longer recovery resync.")
    var alExtents: Int = ActivityLog.Configuration.default.hotExtentLimit

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    func validate() throws {
        guard !exports.isEmpty else { throw ValidationError("nothing to serve: give at least one --export") }
        guard mode_t(socketMode, radix: 8) != nil else { throw ValidationError("--socket-mode \(socketMode) is not an octal mode") }
        let names = exports.map(\.name)
        guard Set(names).count == names.count else { throw ValidationError("--export names must be unique") }
    }

    func run() async throws {
        let level = logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "vmhad")
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
        let services: [any Service] = exports.map { spec in
            VolumeService(
                spec: spec,
                socket: .init(path: spec.socketPath, mode: mode_t(socketMode, radix: 8)!, group: group),
                activityLogExtents: alExtents, ring: ring, logger: logger)
        }
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

extension Logger.Level: @retroactive ExpressibleByArgument {}
