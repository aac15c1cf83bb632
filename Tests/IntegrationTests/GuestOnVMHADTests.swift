import Foundation
import Harness
import Libvirt
import Logging
import Testing

#if canImport(Glibc)
import Glibc
#endif

let hostsAvailable = getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/libvirtd")
    && FileManager.default.isExecutableFile(atPath: "/usr/bin/qemu-system-x86_64")

/// A real (TCG) guest whose only disk is a `vmhad` export: the built daemon, a simulated host's
/// libvirtd and QEMU (running as libvirt-qemu:kvm), the records workload verifying at boot.
@Suite("Guest on a vmhad export", .serialized, .enabled(if: hostsAvailable))
struct GuestOnVMHADTests {
    let logger = Logger(label: "vmha.tests.integration")

    @Test func rawImageKeepsEveryAcknowledgedRecordAcrossVMHADRestart() async throws {
        try await recordsSurviveGuestAndDaemonRestart(format: "raw")
    }

    @Test func qcow2ImageKeepsEveryAcknowledgedRecordAcrossVMHADRestart() async throws {
        try await recordsSurviveGuestAndDaemonRestart(format: "qcow2")
    }

    /// Boot, write records, ACPI shutdown, SIGTERM vmhad (clean exit), check the container,
    /// restart vmhad, boot again: the guest's own verification finds every acknowledged record.
    func recordsSurviveGuestAndDaemonRestart(format: String) async throws {
        let guest = try TestGuest.prepare(logger: logger)
        try await TestCluster.with(.init(hosts: 1), logger: logger) { cluster in
            let name = "vd\(format)"
            let image = "\(cluster.scratch)/\(name).\(format)"
            if format == "qcow2" {
                try Shell.run(["qemu-img", "create", "-q", "-f", "qcow2", image, "64M"])
            } else {
                try QemuNBD.createImage(at: image, bytes: 64 << 20)
            }
            let socket = "\(cluster.scratch)/\(name).sock"
            let daemon = VMHADProcess(
                arguments: ["--export", "disk0:\(image):\(socket)", "--socket-mode", "660", "--socket-group", "kvm"],
                socket: socket, log: "\(cluster.scratch)/\(name).vmhad.log")
            let connection = try await LibvirtConnection.open(uri: cluster.hosts[0].uri, logger: logger)
            do {
                try daemon.start()
                let owner = try socketOwnership(socket)
                #expect(owner.mode == 0o660 && owner.group == "kvm", "socket \(owner)")

                let log = SerialLog(path: "\(cluster.scratch)/\(name).serial.log")
                var spec = GuestDomain(
                    name: name, workload: .records, disks: [.nbd(socket: socket, export: "disk0", format: format)],
                    serialLog: log.path)
                spec.interval = 0.1
                let domain = try await connection.define(xml: spec.xml(guest: guest))
                try await domain.start()
                try await log.waitForACK(after: 20, timeout: .seconds(90))
                #expect(log.verifySummaries().first.map { $0.ok == 0 && $0.bad == 0 } == true, "a fresh disk has no records")
                let outcome = try await domain.shutdown(timeout: .seconds(30))
                #expect(outcome == .graceful)
                let acked = try #require(log.lastACK())

                let status = try await daemon.stop()
                #expect(status == 0, "vmhad exits cleanly on SIGTERM; log:\n\(daemon.logTail())")
                #expect(!FileManager.default.fileExists(atPath: socket), "vmhad removes its socket")
                if format == "qcow2" {
                    // The container as QEMU left it through our export: a consistent qcow2 file.
                    let check = try Shell.run(["qemu-img", "check", "--output=json", image])
                    #expect(check.contains("\"check-errors\": 0"), "qemu-img check: \(check)")
                    #expect(!check.contains("\"corruptions\"") || check.contains("\"corruptions\": 0"), "\(check)")
                }

                #expect(daemon.logTail().contains("volume closed cleanly"), "log:\n\(daemon.logTail())")
                try daemon.start()
                let reopened = daemon.logTail().split(separator: "\n").last { $0.contains("volume opened") }
                #expect(reopened?.contains("unclean=false") == true, "a clean stop needs no recovery: \(reopened ?? "no 'volume opened' line")")
                try await domain.start()
                try await log.waitFor("VERIFY of the second boot", timeout: .seconds(90)) { _ in log.verifySummaries().count == 2 }
                let summary = log.verifySummaries()[1]
                logger.info("acked \(acked), second boot \(summary)")
                #expect(summary.bad == 0, "no corrupted record; log tail:\n\(log.lines().suffix(10).joined(separator: "\n"))")
                #expect(summary.ok >= acked, "every acknowledged record (\(acked)) verified: ok=\(summary.ok)")
                #expect(summary.last >= acked)
                try await log.waitForLine(containing: "ACK \(summary.last + 1)", timeout: .seconds(60))
                try await domain.destroy()
                #expect(try await daemon.stop() == 0, "log:\n\(daemon.logTail())")
                await connection.close()
            } catch {
                await connection.close()
                daemon.kill()
                throw error
            }
        }
    }

    /// QEMU (libvirt-qemu) cannot open a root-only socket: the domain does not start, and
    /// libvirt says why.
    @Test func socketQEMUCannotOpenFailsTheDomainStartClearly() async throws {
        let guest = try TestGuest.prepare(logger: logger)
        try await TestCluster.with(.init(hosts: 1), logger: logger) { cluster in
            let image = "\(cluster.scratch)/denied.img"
            try QemuNBD.createImage(at: image, bytes: 16 << 20)
            let socket = "\(cluster.scratch)/denied.sock"
            let daemon = VMHADProcess(
                arguments: ["--export", "disk0:\(image):\(socket)", "--socket-mode", "600"],
                socket: socket, log: "\(cluster.scratch)/denied.vmhad.log")
            let connection = try await LibvirtConnection.open(uri: cluster.hosts[0].uri, logger: logger)
            do {
                try daemon.start()
                #expect(try socketOwnership(socket).mode == 0o600)
                let spec = GuestDomain(
                    name: "denied", workload: .idle, disks: [.nbd(socket: socket, export: "disk0")],
                    serialLog: "\(cluster.scratch)/denied.serial.log")
                let domain = try await connection.define(xml: spec.xml(guest: guest))
                let error = await #expect(throws: LibvirtError.self) { try await domain.start() }
                logger.info("domain start refused: \(String(describing: error))")
                #expect(error?.operation == "virDomainCreate")
                #expect(error?.message.contains("Permission denied") == true, "\(String(describing: error))")
                #expect(error?.message.contains(socket) == true, "the error names the socket: \(String(describing: error))")
                let active = try await domain.state().isActive
                #expect(!active)
                #expect(try await daemon.stop() == 0)
                await connection.close()
            } catch {
                await connection.close()
                daemon.kill()
                throw error
            }
        }
    }
}

struct VMHADFailure: Error, CustomStringConvertible {
    var what: String
    var description: String { what }
}

/// The socket's permission bits and group name.
func socketOwnership(_ path: String) throws -> (mode: mode_t, group: String) {
    var st = stat()
    guard stat(path, &st) == 0 else { throw VMHADFailure(what: "stat \(path): errno \(errno)") }
    let group = getgrgid(st.st_gid).map { String(cString: $0.pointee.gr_name) } ?? "\(st.st_gid)"
    return (st.st_mode & 0o7777, group)
}

/// The built `vmhad` (next to the test bundle), started and stopped by the test, with its log in
/// a file. Not Sendable-shared: one test owns it.
final class VMHADProcess: @unchecked Sendable {
    let arguments: [String]
    let socket: String
    let log: String
    private var process: Process?

    init(arguments: [String], socket: String, log: String) {
        self.arguments = arguments
        self.socket = socket
        self.log = log
    }

    static func executable() throws -> String { try builtProduct("vmhad") }

    /// Starts vmhad and waits until its socket exists.
    func start() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try Self.executable())
        p.arguments = arguments
        if !FileManager.default.fileExists(atPath: log) { _ = FileManager.default.createFile(atPath: log, contents: nil) }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        handle.seekToEndOfFile()
        p.standardError = handle
        p.standardOutput = handle
        try p.run()
        try? handle.close()
        process = p
        for _ in 0..<500 where access(socket, F_OK) != 0 && p.isRunning { usleep(10_000) }
        guard access(socket, F_OK) == 0 else {
            kill()
            throw VMHADFailure(what: "vmhad \(arguments.joined(separator: " ")): socket never appeared:\n\(logTail())")
        }
    }

    /// SIGTERM, then waits up to 15 s for the exit; returns the exit status (SIGKILL and -1 on timeout).
    func stop() async throws -> Int32 {
        guard let p = process else { return -1 }
        process = nil
        Glibc.kill(p.processIdentifier, SIGTERM)
        let deadline = ContinuousClock.now + .seconds(15)
        while p.isRunning && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        if p.isRunning {
            Glibc.kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            return -1
        }
        return p.terminationStatus
    }

    /// SIGKILL (cleanup on failure paths).
    func kill() {
        guard let p = process else { return }
        process = nil
        if p.isRunning {
            Glibc.kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
        }
    }

    func logTail() -> String {
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(20).joined(separator: "\n")
    }
}
