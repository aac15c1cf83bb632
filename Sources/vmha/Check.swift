import ArgumentParser
import Foundation
import Libvirt
import Logging
import Uring

/// `vmha check`: can this host run vmhad? io_uring usable, libvirt reachable.
struct Check: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check that this host can run vmhad (io_uring, libvirt).")

    @Option(help: "libvirt URI to check.")
    var libvirt: String = "qemu:///system"

    func run() async throws {
        let logger = Logger(label: "vmha")
        var failed = false
        do {
            let ring = try IOUring(logger: logger)
            try await ring.nop()
            await ring.shutdown()
            print("io_uring: ok")
        } catch {
            print("io_uring: FAILED: \(error)")
            failed = true
        }
        do {
            let connection = try await LibvirtConnection.open(uri: libvirt, logger: logger)
            let node = try await connection.nodeInfo()
            print("libvirt \(libvirt): ok (\(node.cpus) CPUs, \(node.memoryBytes >> 20) MiB)")
            await connection.close()
        } catch {
            print("libvirt \(libvirt): FAILED: \(error)")
            failed = true
        }
        if failed { throw ExitCode.failure }
    }
}
