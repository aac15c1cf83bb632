import Foundation
import SystemCalls

/// A `qemu-nbd` serving one image file on a UNIX socket, as the test hosts' shared storage.
///
/// The socket is created under `umask 000`: QEMU runs as libvirt-qemu and libvirt does not
/// relabel network-disk sockets. `--persistent` survives client disconnects (reboots), and
/// `--shared` allows the two QEMUs of a live migration to be connected at once.
public struct QemuNBD: Sendable {
    public let image: String
    public let socket: String
    public let format: String
    public let pidFile: String

    public init(image: String, socket: String, format: String = "raw") {
        self.image = image
        self.socket = socket
        self.format = format
        self.pidFile = socket + ".pid"
    }

    var process: OwnedProcess { OwnedProcess(pidFile: pidFile, identity: ["qemu-nbd", "--socket=\(socket)"]) }

    public var pid: pid_t? { process.pid }

    /// Starts the server; returns once the socket accepts connections (`--fork` waits for that).
    public func start() throws {
        _ = try? Syscall.call("unlink") { unlink(socket) }  // a stale socket from an earlier run, if any
        try Shell.run([
            "sh", "-c", "umask 000; exec \"$@\"", "sh",
            "qemu-nbd", "--socket=\(socket)", "-f", format, "--persistent", "--shared=8",
            // io_uring, not native AIO: each native-AIO qemu-nbd takes a kernel AIO context, and
            // idle100's 100 baseline servers ran out of them (fs.aio-max-nr: "failed to create
            // linux AIO context: Resource temporarily unavailable" at the 65th).
            "--cache=none", "--aio=io_uring", "--fork", "--pid-file=\(pidFile)", image,
        ])
    }

    /// Stops it; `SIGKILL` simulates the storage vanishing mid-write.
    ///
    /// qemu-nbd delays a SIGTERM exit while clients are connected, so a server that does not
    /// exit within 2 s is killed.
    public func stop(signal: Int32 = SIGTERM) {
        if !process.kill(signal, timeout: .seconds(2)) { process.kill(SIGKILL) }
        _ = try? Syscall.call("unlink") { unlink(socket) }
    }

    /// A sparse raw image of `bytes` size, or with `format` "qcow2" a qcow2 image of that
    /// virtual size (`qemu-img create`'s defaults: 64 KiB clusters, 16-bit refcounts).
    public static func createImage(at path: String, bytes: UInt64, format: String = "raw") throws {
        if format != "raw" {
            try Shell.run(["qemu-img", "create", "-q", "-f", format, path, "\(bytes)"])
            return
        }
        guard FileManager.default.createFile(atPath: path, contents: nil) else {
            throw ShellError(command: ["create", path], status: 1, stderr: "cannot create \(path)", stdout: "")
        }
        guard truncate(path, off_t(bytes)) == 0 else {
            throw ShellError(command: ["truncate", path], status: errno, stderr: String(cString: strerror(errno)), stdout: "")
        }
    }
}
