import Foundation
import Harness
import Testing

/// Two vmhad hosts in two network namespaces joined by a veth pair: host A serves the volume
/// (primary, NBD socket reachable from the test), host B holds the replica. Everything lives in
/// a temporary directory and is removed, daemons killed and namespaces deleted, on every path.
final class TwoHostFixture: @unchecked Sendable {
    static let port = 7788
    let network: NetworkPair
    let directory: String
    let imageA: String, imageB: String, socket: String, key: String
    let size: Int
    var daemons: [NamespacedDaemon] = []
    private var logIndex = 0

    init(sizeMiB: Int, randomContent: Bool = true) throws {
        size = sizeMiB << 20
        directory = NSTemporaryDirectory() + "vmha-repl-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        imageA = directory + "/a.img"
        imageB = directory + "/b.img"
        socket = directory + "/a.sock"
        key = directory + "/cluster.key"
        try Data((0..<32).map { _ in UInt8.random(in: 0...255) }).write(to: URL(fileURLWithPath: key))
        if randomContent {
            try Shell.run(["dd", "if=/dev/urandom", "of=\(imageA)", "bs=1M", "count=\(sizeMiB)", "status=none"])
        } else {
            try Shell.run(["truncate", "-s", "\(size)", imageA])
        }
        try Shell.run(["truncate", "-s", "\(size)", imageB])
        network = try NetworkPair()
    }

    deinit {
        for daemon in daemons where daemon.process.isRunning { kill(daemon.process.processIdentifier, SIGKILL) }
        network.destroy()
        try? FileManager.default.removeItem(atPath: directory)
    }

    var uri: String { "nbd+unix:///d0?socket=\(socket)" }
    var replicationAddress: String { "\(network.addresses.1):\(Self.port)" }

    static func vmhad() throws -> String { try builtProduct("vmhad") }

    private func start(namespace: String, _ arguments: [String]) throws -> NamespacedDaemon {
        logIndex += 1
        let daemon = try NamespacedDaemon(
            namespace: namespace, executable: try Self.vmhad(), arguments: arguments + ["--peer-timeout", "1"],
            logPath: directory + "/vmhad-\(logIndex).log")
        daemons.append(daemon)
        return daemon
    }

    /// Host A: the volume's primary, replicating to B.
    func startPrimary(replicate: Bool = true, key: String? = nil, extra: [String] = []) throws -> NamespacedDaemon {
        var arguments = ["--export", "d0:\(imageA):\(socket)", "--socket-mode", "600", "--host-name", "hostA"] + extra
        if replicate { arguments += ["--replicate-to", replicationAddress, "--key-file", key ?? self.key] }
        return try start(namespace: network.names.0, arguments)
    }

    /// Host B: the replica, accepting A's link.
    func startReplica(key: String? = nil, extra: [String] = []) throws -> NamespacedDaemon {
        try start(
            namespace: network.names.1,
            ["--replica", "d0:\(imageB)", "--listen", replicationAddress, "--key-file", key ?? self.key, "--host-name", "hostB"] + extra)
    }

    /// Host B as a primary of its own copy (a split-brain setup: B was promoted while cut off).
    func startReplicaAsPrimary(socket: String) throws -> NamespacedDaemon {
        try start(namespace: network.names.1, ["--export", "d0:\(imageB):\(socket)", "--socket-mode", "600", "--host-name", "hostB"])
    }

    /// Brings both replicas in sync, then lets each side write alone as primary, cut off from the
    /// other: first B, promoted (qemu-io command `onB`), then A going on as the old primary (`onA`).
    /// `onB` nil: B is promoted but answers no write (a switchover target that crashed at once).
    func makeSplitBrain(onA: String, onB: String?) async throws {
        let replica = try startReplica()
        let primary = try startPrimary()
        try await primary.waitForLog("resync finished")
        await primary.stop()
        await replica.stop()

        let socketB = directory + "/b.sock"
        let loneB = try startReplicaAsPrimary(socket: socketB)
        try await waitForSocket(socketB)
        if let onB { try await Shell.run(async: ["qemu-io", "-f", "raw", "-c", onB, "nbd+unix:///d0?socket=\(socketB)"]) }
        await loneB.stop()
        let loneA = try startPrimary(replicate: false)
        try await waitForSocket()
        try await Shell.run(async: ["qemu-io", "-f", "raw", "-c", onA, uri])
        await loneA.stop()
    }

    func waitForSocket(_ path: String? = nil) async throws {
        for _ in 0..<300 where access(path ?? socket, F_OK) != 0 { try await Task.sleep(for: .milliseconds(10)) }
    }

    func sha256(_ path: String) throws -> String {
        String(try Shell.run(["sha256sum", path]).prefix(64))
    }
}

/// The `key=value` metadata of a vmhad log line (swift-log's stream handler format).
func logField(_ line: String, _ key: String) -> String? {
    guard let range = line.range(of: " \(key)=") else { return nil }
    return String(line[range.upperBound...].prefix { $0 != " " })
}
