import ArgumentParser
import Cluster
import Crypto
import Foundation
import HAService
import Libvirt
import Logging
import Replication
import Sockets
import Uring

/// `vmha support-bundle`: one archive with what support needs from both hosts. This host's part
/// is collected here (so it works with vmhad down); the peer's comes from the peer's vmhad over
/// the authenticated peer link.
struct SupportBundleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "support-bundle",
        abstract: "Write one .tar.gz with configuration (secrets redacted), status, events, logs, domain XMLs, metadata, versions and network state of this host and its peer.")

    @Option(help: "The cluster configuration.") var config: String = "/etc/vmha/vmha.toml"
    @Option(help: "Which configured host this is (default: the hostname).") var host: String?
    @Option(name: .shortAndLong, help: "The archive to write (default: vmha-support-HOST-TIME.tar.gz here).") var output: String?
    @Option(help: "Only this much history of events and logs: 90s, 30m, 12h, 2d (default: all that is kept).") var since: String?
    @Option(help: "Seconds to wait for the peer's part.") var peerTimeout: Double = 60

    static func seconds(_ text: String) -> UInt64? {
        let units: [Character: UInt64] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        guard let unit = text.last.flatMap({ units[$0] }), let value = UInt64(text.dropLast()), value > 0 else { return nil }
        return value * unit
    }

    func validate() throws {
        if let since, Self.seconds(since) == nil { throw ValidationError("--since \(since): give a number with s, m, h or d (e.g. 30m)") }
    }

    func run() async throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .error
            return handler
        }
        let logger = Logger(label: "vmha.support-bundle")
        let setup: ClusterSetup
        switch ClusterSetup.load(path: config, host: host) {
        case .success(let s): setup = s
        case .failure(let problem):
            FileHandle.standardError.write(Data("vmha: \(problem)\n".utf8))
            throw ExitCode(78)
        }
        let sinceSeconds = since.flatMap(Self.seconds) ?? 0
        let configuration = setup.configuration
        let me = configuration.host(named: setup.host)!
        let peer = configuration.peer(of: setup.host)!
        let stamp = Self.timestamp()
        let name = "vmha-support-\(setup.host)-\(stamp)"
        let output = self.output ?? "\(name).tar.gz"

        var notes = ["vmha support bundle from \(setup.host), \(stamp) UTC, vmha \(VMHAVersion.current)", "history: \(since ?? "all kept")"]
        // This host: vmhad's status if it answers; libvirt for the live domain XML.
        var status: ClusterStatusReport?
        var statusProblem: String?
        do {
            let response = try ControlClient.send(ControlRequest(command: "status"), socket: "\(configuration.stateDirectory)/control.sock")
            status = response.status
            if status == nil { statusProblem = response.error ?? "no status in the answer" }
        } catch {
            statusProblem = "\(error)"
            notes.append("\(setup.host): vmhad did not answer on its control socket: \(error)")
        }
        let libvirt = try? await LibvirtConnection.open(uri: me.libvirtURI, keepAlive: nil, logger: logger)
        if libvirt == nil { notes.append("\(setup.host): libvirt at \(me.libvirtURI) not reachable: no live domain XML") }
        let bundle = SupportBundle(host: setup.host, configPath: config, configuration: configuration, sinceSeconds: sinceSeconds, key: setup.key)
        let local = await bundle.collect(status: status, statusProblem: statusProblem, libvirt: libvirt)
        await libvirt?.close()

        // The peer: its vmhad, over the peer link, authenticated with the cluster key.
        var remote: [SupportFile] = []
        let address = TCPSocket.Address("\(peer.replicationAddress.host):\(peer.replicationAddress.port)")!
        do {
            let ring = try IOUring(logger: logger)
            defer { Task { await ring.shutdown() } }
            let handshake = PeerHandshake.Configuration(
                hostName: setup.host, clusterName: configuration.clusterName, clusterKey: SymmetricKey(data: setup.key), expectedPeerHost: peer.name)
            let bytes = try await PeerSupportClient.fetch(
                from: address, configuration: handshake, sinceSeconds: sinceSeconds, timeout: .milliseconds(Int(peerTimeout * 1000)), ring: ring,
                logger: logger)
            remote = SupportBundle.scrub(try SupportBundle.decode(bytes), secret: setup.key)
            notes.append("\(peer.name): part received over the peer link from \(address) (\(bytes.count) bytes)")
        } catch {
            remote = [SupportFile(path: "UNREACHABLE.txt", text: "the peer's vmhad at \(address) did not give its part: \(error)\n")]
            notes.append("\(peer.name): not reachable over the peer link at \(address): \(error)")
        }

        let staging = FileManager.default.temporaryDirectory.appendingPathComponent("vmha-support-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        defer { try? FileManager.default.removeItem(at: staging) }
        let root = staging.appendingPathComponent(name).path
        do {
            try SupportBundle.write(local, to: "\(root)/\(setup.host)")
            try SupportBundle.write(remote, to: "\(root)/\(peer.name)")
            try SupportBundle.write(SupportBundle.scrub([SupportFile(path: "README.txt", text: notes.joined(separator: "\n") + "\n")], secret: setup.key), to: root)
        } catch {
            FileHandle.standardError.write(Data("vmha: cannot stage the bundle in \(staging.path): \(error)\n".utf8))
            throw ExitCode(73)  // EX_CANTCREAT
        }
        let tar = Process()
        tar.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        tar.arguments = ["tar", "-czf", URL(fileURLWithPath: output).path, "-C", staging.path, name]
        try tar.run()
        tar.waitUntilExit()
        guard tar.terminationStatus == 0 else {
            FileHandle.standardError.write(Data("vmha: tar could not write \(output) (exit \(tar.terminationStatus))\n".utf8))
            throw ExitCode(73)
        }
        for note in notes.dropFirst(2) { print(note) }
        print("wrote \(output)")
    }

    static func timestamp() -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd-HHmmss"
        return formatter.string(from: Date())
    }
}
