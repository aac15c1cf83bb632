import ArgumentParser
import Foundation
import Harness
import Libvirt
import Locking
import Logging
import SystemCalls

#if canImport(Glibc)
import Glibc
#endif

/// `vmha demo`: the whole product on this one machine, with a real guest. Two simulated
/// hypervisors (own libvirtd each, own network namespace) and a witness; a small guest writes
/// checksummed records to a replicated disk; host A is killed hard; the guest comes back on B
/// and proves at boot that no acknowledged record was lost; A returns, is resynced
/// incrementally, and the guest moves back. Everything is torn down at the end, also on failure.
struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a two-host cluster with a real guest on this machine: failover, resync, failback (needs root).")

    @Flag(help: "End with one JSON object of the measured results.")
    var json = false

    @Flag(help: "Serve both hosts' web consoles on 127.0.0.1:9480 (hostA) and :9481 (hostB) from the start, and keep the cluster up after the demo until Ctrl-C.")
    var console = false

    struct Result: Codable {
        var failover_seconds: Double
        var takeover_seconds: Double
        var acknowledged_records: Int
        var lost_records: Int
        var resync_bytes: UInt64
        var written_while_away_bytes: UInt64
        var dual_primary_observed: Bool
        var replicas_identical: Bool
        var failback_seconds: Double
    }

    func run() async throws {
        guard getuid() == 0 else { throw ValidationError("vmha demo needs root (namespaces, libvirtd, QEMU)") }
        let json = self.json, console = self.console
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .warning
            return handler
        }
        let logger = Logger(label: "vmha.demo")
        let start = ContinuousClock.now
        @Sendable func say(_ text: String) {
            let elapsed = start.duration(to: .now).components.seconds
            let line = String(format: "[%4ds] ", elapsed) + text
            // Unbuffered also into a pipe or a file (`| tee`): the console's URL must show at once.
            (json ? FileHandle.standardError : FileHandle.standardOutput).write(Data((line + "\n").utf8))
        }
        let here = URL(fileURLWithPath: try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
        let vmha = here.path
        let vmhad = here.deletingLastPathComponent().appendingPathComponent("vmhad").path
        guard FileManager.default.isExecutableFile(atPath: vmhad) else { throw ValidationError("\(vmhad) is missing: build vmhad too") }

        say("preparing the test guest (Debian cloud kernel + busybox initramfs, cached)")
        let guest = try TestGuest.prepare(logger: logger)
        say("starting three simulated hosts: hostA and hostB (own libvirtd, network namespace, veth links) and hostC for the witness")
        // Ctrl-C at any point cancels the demo; the cluster's teardown still runs in full.
        signal(SIGINT, SIG_IGN)
        let interrupted = Locked(false)
        let work = Task { try await Self.cluster(guest: guest, vmhad: vmhad, vmha: vmha, console: console, say: say, logger: logger) }
        let interrupt = DispatchSource.makeSignalSource(signal: SIGINT)
        interrupt.setEventHandler {
            interrupted.withLock { $0 = true }
            work.cancel()
        }
        interrupt.resume()
        defer { interrupt.cancel() }
        let result: Result
        do {
            result = try await work.value
        } catch where interrupted.withLock({ $0 }) {
            say("interrupted; everything was torn down")
            throw ExitCode(130)
        }
        say("done; everything was torn down")
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(result), as: UTF8.self))
        } else {
            print("""

                failover (kill → guest verified on B):  \(String(format: "%.1f", result.failover_seconds)) s (B took over after \(String(format: "%.1f", result.takeover_seconds)) s)
                acknowledged records before the kill:    \(result.acknowledged_records), lost: \(result.lost_records)
                written on B while A was away:           \(result.written_while_away_bytes) bytes; resynced to A: \(result.resync_bytes) bytes
                failback (vmha migrate):                 \(String(format: "%.1f", result.failback_seconds)) s
                guest running on two hosts at once:      \(result.dual_primary_observed ? "YES" : "never")
                replicas identical at the end:           \(result.replicas_identical ? "yes" : "NO")
                """)
        }
        if result.lost_records > 0 || result.dual_primary_observed || !result.replicas_identical { throw ExitCode.failure }
    }

    static let consolePort = 9480

    /// The cluster, the scenario, and with `console` the consoles until Ctrl-C (cancellation).
    private static func cluster(guest: TestGuest, vmhad: String, vmha: String, console: Bool, say: @escaping @Sendable (String) -> Void, logger: Logger) async throws -> Result {
        try await TestCluster.with(.init(hosts: 3), logger: logger) { cluster -> Result in
            try await HACluster(cluster: cluster, guest: guest, vmhad: vmhad, vmha: vmha, consolePort: console ? Self.consolePort : nil).run { ha in
                var forwarders: [NamespaceForwarder] = []
                defer { for f in forwarders { f.stop() } }
                if console {
                    for (i, host) in [ha.hostA, ha.hostB].enumerated() {
                        forwarders.append(try NamespaceForwarder(port: Self.consolePort + i, namespace: host.netns, targetHost: "127.0.0.1", targetPort: Self.consolePort))
                    }
                    say("web consoles: http://127.0.0.1:\(Self.consolePort)/ (hostA) and http://127.0.0.1:\(Self.consolePort + 1)/ (hostB), answering once vmhad runs; login token: \(ha.consoleToken)")
                }
                let result = try await Self.scenario(ha, say: say, logger: logger)
                if console { try await Self.keepUp(ha, say: say) }
                return result
            }
        }
    }

    /// After the demo: both vmhad again (vm1 starts on hostA), until Ctrl-C.
    private static func keepUp(_ ha: HACluster, say: (String) -> Void) async throws {
        try ha.startDaemon(0)
        try ha.startDaemon(1)
        try await HACluster.waitUntil("vm1 running on hostA again", timeout: .seconds(120)) { ha.vm(0)?.state == "PRIM" }
        say("the cluster is up again with the consoles above (token \(ha.consoleToken)); Ctrl-C ends it and tears everything down")
        // Ctrl-C cancels this task (see run()); until then it sleeps.
        while (try? await Task.sleep(for: .seconds(3600))) != nil {}
        say("Ctrl-C: tearing down")
    }

    private static func scenario(_ ha: HACluster, say: (String) -> Void, logger: Logger) async throws -> Result {
        let serial = ha.serial
        try ha.startWitness()
        try ha.startDaemon(0)
        try ha.startDaemon(1)
        say("vmhad runs on hostA and hostB; vm1 prefers hostA; its disk is replicated to hostB")
        try await HACluster.waitUntil("vm1 running on hostA, hostB's replica UpToDate", timeout: .seconds(120)) {
            ha.vm(0)?.state == "PRIM" && ha.vm(1)?.state == "SECOND" && ha.vm(1)?.replica == "upToDate"
        }
        try await serial.waitForACK(after: 10, timeout: .seconds(90))
        say("the guest writes checksummed records (\(serial.lastACK() ?? 0) acknowledged so far). vmha status on hostA:")
        say(try ha.vmhaCommand(0, ["status"]).output.trimmingCharacters(in: .whitespacesAndNewlines))

        // Watch for the one thing that must never happen: the guest running on both hosts.
        let dual = Locked(false)
        let watcher = Task.detached {
            while !Task.isCancelled {
                if ha.hostA.qemuPID(domain: "vm1") != nil && ha.hostB.qemuPID(domain: "vm1") != nil { dual.withLock { $0 = true } }
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
        defer { watcher.cancel() }

        say("killing hostA hard: SIGKILL to its vmhad, libvirtd and QEMU, its links down")
        ha.daemons[0]?.kill()
        try ha.hostA.crash()
        let killedAt = ContinuousClock.now
        let acked = serial.lastACK() ?? 0
        try await HACluster.waitUntil("hostB to take vm1 over", timeout: .seconds(60)) { ha.vm(1)?.state == "ALONE" }
        let takeover = killedAt.duration(to: .now).seconds
        say(String(format: "hostB has the witness's vote and runs vm1 (%.1f s after the kill); the guest boots and verifies its records", takeover))
        try await serial.waitFor("the guest's verification on hostB", timeout: .seconds(90)) { _ in serial.verifySummaries().count >= 2 }
        let failover = killedAt.duration(to: .now).seconds
        let verify = serial.verifySummaries()[1]
        let lost = max(0, acked - verify.last) + verify.bad
        say("guest on hostB: VERIFY ok=\(verify.ok) bad=\(verify.bad) last=\(verify.last); last record acknowledged before the kill: \(acked) → lost \(lost)")

        try await serial.waitForACK(after: verify.last + 20, timeout: .seconds(60))
        say("hostA comes back (libvirtd, links, vmhad): it rejoins as secondary and is resynced incrementally")
        let ackAtReturn = serial.lastACK() ?? verify.last
        // The resync's figure comes from its own event on B (the sync source), not from a status
        // read that a later link change can reset.
        guard let eventsBefore = ha.status(1)?.eventSequence else { throw HAClusterError("hostB's vmhad did not report its event sequence") }
        let volumes = Set(ha.vm(1)?.volumes.map(\.name) ?? [])
        try ha.hostA.startLibvirtdInExistingNamespaces()
        try ha.hostA.linksUp()
        try ha.startDaemon(0)
        var lastShown = ""
        try await HACluster.waitUntil("hostA's replica UpToDate", timeout: .seconds(90)) {
            if let volume = ha.vm(1)?.volumes.first {
                let line = "resync: \(volume.resyncDoneBytes)/\(volume.resyncTotalBytes) bytes"
                if line != lastShown { say(line); lastShown = line }
            }
            return ha.vm(0)?.state == "SECOND" && ha.vm(0)?.replica == "upToDate" && ha.vm(1)?.peerReplica == "upToDate"
        }
        var finished: [(bytes: UInt64, seconds: Double)] = []
        try await HACluster.waitUntil("hostB's resyncFinished event", timeout: .seconds(30)) {
            finished = try ha.events(1, since: eventsBefore).compactMap {
                if case .resyncFinished(let volume, let bytes, _, let seconds) = $0.kind, volumes.contains(volume) { (bytes, seconds) } else { nil }
            }
            return !finished.isEmpty
        }
        let resyncBytes = finished.map(\.bytes).reduce(0, +)
        // Each record is one 4 KiB block; the records written between the verification on B and
        // A's return are what A missed.
        let written = UInt64(max(0, ackAtReturn - verify.last)) * 4096
        say(String(format: "hostA is UpToDate again: %llu bytes resynced in %.1f s for %llu bytes of records written while it was away", resyncBytes, finished.map(\.seconds).reduce(0, +), written))

        say("failback: vmha migrate vm1 --to hostA (clean shutdown on B, role swap, start on A)")
        let failbackStart = ContinuousClock.now
        let migrate = try ha.vmhaCommand(1, ["migrate", "vm1", "--to", ha.hostA.name])
        guard migrate.status == 0 else { throw HAClusterError("vmha migrate failed (\(migrate.status)): \(migrate.output)") }
        try await HACluster.waitUntil("vm1 running on hostA", timeout: .seconds(90)) { ha.vm(0)?.state == "PRIM" && ha.vm(1)?.state == "SECOND" }
        try await serial.waitFor("the guest's verification on hostA", timeout: .seconds(90)) { _ in serial.verifySummaries().count >= 3 }
        let failback = failbackStart.duration(to: .now).seconds
        let third = serial.verifySummaries()[2]
        say("guest on hostA: VERIFY ok=\(third.ok) bad=\(third.bad) last=\(third.last)")
        try await HACluster.waitUntil("hostB UpToDate", timeout: .seconds(60)) { ha.vm(1)?.replica == "upToDate" }

        // Stop the guest and both daemons cleanly, then compare the two replicas byte for byte.
        let connection = try await LibvirtConnection.open(uri: ha.hostA.uri, logger: logger)
        for domain in try await connection.domains() { try? await domain.destroy() }
        await connection.close()
        try await Task.sleep(for: .seconds(1))
        await ha.stopAll()
        let identical = try Shell.run(["sha256sum", ha.imagePath(host: 0)]).prefix(64) == Shell.run(["sha256sum", ha.imagePath(host: 1)]).prefix(64)
        say("replicas on hostA and hostB are \(identical ? "identical" : "DIFFERENT") (sha256)")
        watcher.cancel()
        return Result(
            failover_seconds: failover, takeover_seconds: takeover, acknowledged_records: acked, lost_records: lost,
            resync_bytes: resyncBytes, written_while_away_bytes: written, dual_primary_observed: dual.withLock { $0 },
            replicas_identical: identical, failback_seconds: failback)
    }
}

