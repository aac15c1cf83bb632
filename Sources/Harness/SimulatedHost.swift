import Foundation
import Libvirt
import Logging
import Synchronization

/// One simulated hypervisor: a private libvirtd + virtlogd pair inside its own network, mount
/// and UTS namespaces, believing it owns /etc/libvirt, /run/libvirt, /var/lib/libvirt,
/// /var/log/libvirt and /var/cache/libvirt (bind mounts of per-host copies under ``root``).
///
/// Everything else (e.g. /tmp, where images, NBD sockets and serial logs live) is shared with
/// the real host, so all simulated hosts see the same "storage".
public final class SimulatedHost: Sendable {
    public let name: String
    public let netns: String
    public let root: String
    public let hostUUID: String
    let logger: Logger
    private let interfaces = Mutex<[String]>([])

    public var uri: String { "qemu+unix:///system?socket=\(root)/run/libvirt-sock" }

    var libvirtd: OwnedProcess { OwnedProcess(pidFile: "\(root)/libvirtd.pid", identity: ["libvirtd", "-p \(root)/libvirtd.pid"]) }
    var virtlogd: OwnedProcess { OwnedProcess(pidFile: "\(root)/virtlogd.pid", identity: ["virtlogd", "-p \(root)/virtlogd.pid"]) }

    init(name: String, netns: String, root: String, hostUUID: String, logger: Logger) {
        self.name = name
        self.netns = netns
        self.root = root
        self.hostUUID = hostUUID
        self.logger = logger
    }

    /// The veth interfaces (inside ``netns``) that connect this host to its peers.
    public var linkInterfaces: [String] { interfaces.withLock { $0 } }
    func addInterface(_ name: String) { interfaces.withLock { $0.append(name) } }

    /// Where a path libvirt names inside this host (under its bind-mounted libvirt directories,
    /// see ``start()``) is seen from outside, e.g. a channel socket libvirt placed.
    public func outsidePath(_ path: String) -> String {
        for (inside, own) in [("/etc/libvirt/", "etc"), ("/run/libvirt/", "run"), ("/var/lib/libvirt/", "lib"),
                              ("/var/log/libvirt/", "log"), ("/var/cache/libvirt/", "cache")] where path.hasPrefix(inside) {
            return "\(root)/\(own)/" + path.dropFirst(inside.count)
        }
        return path
    }

    // MARK: - Bring-up

    func start() throws {
        // Fail here, in one line, rather than minutes later when every domain start takes ~48 s.
        if let problem = KVMDevice.problem() {
            throw ShellError(command: ["stat", KVMDevice.path], status: -1, stderr: "simulated host \(name): \(problem)", stdout: "")
        }
        try prepareState()
        try Shell.run(["ip", "netns", "add", netns])
        try Shell.run(["ip", "-n", netns, "link", "set", "lo", "up"])
        // The daemons fork into the background and keep the new mount+UTS namespaces alive.
        try Shell.run([
            "ip", "netns", "exec", netns, "unshare", "--mount", "--uts", "--propagation", "private", "--",
            "/bin/sh", "-ec",
            """
            hostname "$1"
            # Mount points; /run/libvirt only exists while the system libvirtd runs.
            mkdir -p /run/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt
            mount --bind "$2/etc" /etc/libvirt
            mount --bind "$2/run" /run/libvirt
            mount --bind "$2/lib" /var/lib/libvirt
            mount --bind "$2/log" /var/log/libvirt
            mount --bind "$2/cache" /var/cache/libvirt
            virtlogd -d -p "$2/virtlogd.pid"
            libvirtd -d -p "$2/libvirtd.pid"
            """,
            "sh", name, root,
        ])
        try waitForLibvirtd()
        saveCapabilitiesCache()
        logger.debug("simulated host up", metadata: ["host": "\(name)", "uri": "\(uri)"])
    }

    /// Where probed QEMU capabilities are kept between hosts and runs: probing QEMU is most of
    /// a fresh libvirtd's start-up time, and libvirt re-validates the cache (binary ctimes) itself.
    static var capabilitiesCache: String { TestGuest.defaultCacheDirectory + "/libvirt-qemu-capabilities" }

    private func saveCapabilitiesCache() {
        let fm = FileManager.default
        let source = "\(root)/cache/qemu/capabilities"
        guard !fm.fileExists(atPath: Self.capabilitiesCache), fm.fileExists(atPath: source) else { return }
        _ = Shell.attempt(["cp", "-a", source, Self.capabilitiesCache])
    }

    /// Per-host copies of libvirt's state directories.
    private func prepareState() throws {
        let fm = FileManager.default
        for sub in ["run", "log/qemu", "cache/qemu"] {
            try fm.createDirectory(atPath: "\(root)/\(sub)", withIntermediateDirectories: true)
        }
        if fm.fileExists(atPath: Self.capabilitiesCache) {
            _ = Shell.attempt(["cp", "-a", Self.capabilitiesCache, "\(root)/cache/qemu/capabilities"])
        }
        try Shell.run(["cp", "-a", "/etc/libvirt", "\(root)/etc"])
        // Not the real host's guests, autostart links or networks (a network would start dnsmasq).
        for dir in ["qemu", "qemu/autostart", "qemu/networks/autostart"] {
            let path = "\(root)/etc/\(dir)"
            for f in (try? fm.contentsOfDirectory(atPath: path)) ?? [] where dir != "qemu" || f.hasSuffix(".xml") {
                try fm.removeItem(atPath: "\(path)/\(f)")
            }
        }
        try append("\nhost_uuid = \"\(hostUUID)\"\n", to: "\(root)/etc/libvirtd.conf")
        // Domain IDs restart at 1 per daemon: without this two hosts would share cgroups.
        try append("\ncgroup_controllers = [ ]\n", to: "\(root)/etc/qemu.conf")
        // Same directory skeleton, owners and modes as /var/lib/libvirt, without its content.
        let lib = "/var/lib/libvirt"
        try copyDirectoryAttributes(from: lib, to: "\(root)/lib")
        if let e = fm.enumerator(atPath: lib) {
            while let rel = e.nextObject() as? String {
                guard (e.fileAttributes?[.type] as? FileAttributeType) == .typeDirectory else { continue }
                if rel.hasPrefix("qemu/domain-") || rel.hasPrefix("images/") || rel.hasPrefix("boot/") {
                    e.skipDescendants()
                    continue
                }
                try copyDirectoryAttributes(from: "\(lib)/\(rel)", to: "\(root)/lib/\(rel)")
            }
        }
    }

    private func copyDirectoryAttributes(from source: String, to destination: String) throws {
        let fm = FileManager.default
        let attributes = try fm.attributesOfItem(atPath: source)
        try fm.createDirectory(atPath: destination, withIntermediateDirectories: true)
        try fm.setAttributes(
            [.ownerAccountID: attributes[.ownerAccountID]!, .groupOwnerAccountID: attributes[.groupOwnerAccountID]!,
             .posixPermissions: attributes[.posixPermissions]!],
            ofItemAtPath: destination)
    }

    private func append(_ text: String, to path: String) throws {
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(text.utf8))
    }

    private func waitForLibvirtd(timeout: Duration = .seconds(20)) throws {
        let deadline = ContinuousClock.now + timeout
        var lastError: Error?
        while ContinuousClock.now < deadline {
            do {
                try Shell.run(["virsh", "-q", "-c", uri, "version"])
                return
            } catch {
                lastError = error
                usleep(100_000)
            }
        }
        throw ShellError(command: ["virsh", "-c", uri, "version"], status: -1,
                         stderr: "libvirtd of \(name) did not answer: \(lastError.map { "\($0)" } ?? "")", stdout: "")
    }

    // MARK: - Faults

    /// The PID of a running guest's QEMU on this host.
    public func qemuPID(domain: String) -> pid_t? {
        OwnedProcess(pidFile: "\(root)/run/qemu/\(domain).pid", identity: ["qemu-system", "guest=\(domain),"]).pid
    }

    /// Restarts libvirtd inside the host's existing namespaces (entered through its virtlogd),
    /// leaving running QEMUs alone: libvirtd re-attaches to them on start.
    public func restartLibvirtd(signal: Int32 = SIGTERM) throws {
        libvirtd.kill(signal)
        try startLibvirtdInExistingNamespaces()
    }

    /// Starts libvirtd again after ``crash()`` or ``restartLibvirtd(signal:)``.
    public func startLibvirtdInExistingNamespaces() throws {
        guard let anchor = virtlogd.pid else {
            throw ShellError(command: ["nsenter"], status: -1, stderr: "virtlogd of \(name) is not running", stdout: "")
        }
        try Shell.run(["nsenter", "-t", "\(anchor)", "-m", "-u", "-n", "--", "libvirtd", "-d", "-p", "\(root)/libvirtd.pid"])
        try waitForLibvirtd()
    }

    /// A hard host failure: SIGKILL libvirtd and every QEMU of this host, take its links down.
    /// virtlogd stays, holding the namespaces, so the host can "reboot" its libvirtd later.
    public func crash() throws {
        libvirtd.kill(SIGKILL)
        for domain in runningQEMUDomains() {
            OwnedProcess(pidFile: "\(root)/run/qemu/\(domain).pid", identity: ["qemu-system", "guest=\(domain),"]).kill(SIGKILL)
        }
        for interface in linkInterfaces {
            try Shell.run(["ip", "-n", netns, "link", "set", "dev", interface, "down"])
        }
    }

    /// Brings the host's links back up (after ``crash()``).
    public func linksUp() throws {
        for interface in linkInterfaces {
            try Shell.run(["ip", "-n", netns, "link", "set", "dev", interface, "up"])
        }
    }

    private func runningQEMUDomains() -> [String] {
        let dir = "\(root)/run/qemu"
        return ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [])
            .filter { $0.hasSuffix(".pid") && $0 != "driver.pid" }.map { String($0.dropLast(4)) }
    }

    // MARK: - Teardown

    /// Destroys and undefines this host's domains, kills the processes it started (identity
    /// checked), deletes its netns and state directory. Best effort: never throws.
    func teardown() async {
        if libvirtd.pid != nil, let connection = try? await LibvirtConnection.open(uri: uri, keepAlive: nil, logger: logger) {
            for domain in (try? await connection.domains()) ?? [] {
                try? await domain.destroy()
                try? await domain.undefine()
            }
            await connection.close()
        }
        for domain in runningQEMUDomains() {
            OwnedProcess(pidFile: "\(root)/run/qemu/\(domain).pid", identity: ["qemu-system", "guest=\(domain),"]).kill(SIGKILL)
        }
        libvirtd.kill(SIGTERM)
        libvirtd.kill(SIGKILL)
        virtlogd.kill(SIGTERM)
        virtlogd.kill(SIGKILL)
        _ = Shell.attempt(["ip", "netns", "del", netns])
        try? FileManager.default.removeItem(atPath: root)
        logger.debug("simulated host down", metadata: ["host": "\(name)"])
    }
}
