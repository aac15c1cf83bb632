import Logging
import Sockets
import SystemCalls
import SystemPackage
import Uring

#if canImport(Glibc)
import Glibc
#endif

/// Serves one volume as an NBD export on a UNIX socket (QEMU's `nbd` block driver connects to it).
///
/// Several clients may be attached at once (during a live migration the source and destination
/// QEMU both are); the export outlives any client. The socket file gets the configured mode,
/// owner and group, so the hypervisor's QEMU user can connect and others cannot.
public struct NBDServer: Sendable {
    public struct SocketOptions: Sendable {
        public var path: String
        public var mode: mode_t = 0o660
        public var owner: uid_t?
        public var group: gid_t?

        public init(path: String, mode: mode_t = 0o660, owner: uid_t? = nil, group: gid_t? = nil) {
            self.path = path
            self.mode = mode
            self.owner = owner
            self.group = group
        }
    }

    public let volume: LocalVolume
    public let socket: SocketOptions
    public let export: NBDExport
    /// How long a client may take from accept to choosing an export before its socket is shut
    /// down (a stalled or malicious client would otherwise hold a connection forever).
    public var handshakeTimeout: Duration = .seconds(10)
    let logger: Logger

    public init(volume: LocalVolume, socket: SocketOptions, logger: Logger) throws {
        self.volume = volume
        self.socket = socket
        self.export = try NBDExport(name: volume.configuration.name, size: volume.size)
        self.logger = logger
    }

    /// Listens and serves until the task is cancelled (`listen`, then `serve`).
    public func run() async throws {
        await serve(listener: try listen())
    }

    /// Binds the socket with its mode, owner and group: clients can connect once this returns
    /// (a caller that starts a domain next needs no wait).
    public func listen() throws -> FileDescriptor {
        let listener = try UnixSocket.listen(path: socket.path)
        do {
            try UnixSocket.setPermissions(path: socket.path, mode: socket.mode, owner: socket.owner, group: socket.group)
        } catch {
            close(listener: listener)
            throw error
        }
        return listener
    }

    /// Closes a listener from `listen` that is not (or no longer) served, and removes its socket file.
    public func close(listener: FileDescriptor) {
        try? listener.close()
        _ = try? Syscall.call("unlink") { unlink(socket.path) }
    }

    /// Serves `listener` (from `listen`) until the task is cancelled; then stops accepting, ends
    /// every connection, closes it and removes the socket file.
    public func serve(listener: FileDescriptor) async {
        let ring = volume.ring
        defer { close(listener: listener) }
        logger.info("NBD export listening", metadata: ["export": "\(export.name)", "socket": "\(socket.path)", "size": "\(export.size)"])
        await withDiscardingTaskGroup { group in
            while !Task.isCancelled {
                let client: FileDescriptor
                do {
                    client = try await ring.accept(.file(listener))
                } catch .canceled {
                    break
                } catch {
                    logger.error("NBD accept failed", metadata: ["socket": "\(socket.path)", "error": "\(error)"])
                    try? await ring.sleep(nanoseconds: 100_000_000)  // EMFILE and friends: do not spin
                    continue
                }
                let connection = NBDConnection(
                    socket: client, volume: volume, export: export, handshakeTimeout: handshakeTimeout, logger: logger)
                group.addTask(executorPreference: ring) { await connection.run() }
            }
            group.cancelAll()
        }
    }
}
