import ArgumentParser
import Foundation
import Libvirt
import Logging
import Uring

/// `vmha check`: can this host run vmhad? io_uring usable, libvirt reachable, QEMU's capabilities
/// cached (a /dev/kvm QEMU's user cannot open makes libvirt re-probe QEMU at every call).
struct Check: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check that this host can run vmhad (io_uring, libvirt, /dev/kvm).")

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
        if let problem = KVMDevice.problem() {
            print("kvm: FAILED: \(problem)")
            failed = true
        } else {
            print("kvm: ok")
        }
        do {
            let connection = try await LibvirtConnection.open(uri: libvirt, logger: logger)
            let node = try await connection.nodeInfo()
            print("libvirt \(libvirt): ok (\(node.cpus) CPUs, \(node.memoryBytes >> 20) MiB)")
            // The first lookup may probe QEMU legitimately (cold cache); a second one as slow means
            // libvirtd probes at every call (issue 11: ~4 s each, every define and start).
            _ = try await connection.domainCapabilities()
            let clock = ContinuousClock()
            let lookup = try await clock.measure { _ = try await connection.domainCapabilities() }
            if lookup > Self.slowCapabilitiesLookup {
                print("libvirt capabilities: FAILED: a cached lookup took \(lookup) (> \(Self.slowCapabilitiesLookup)): libvirtd re-probes QEMU at every call; see docs/test-hosts.md")
                failed = true
            } else {
                print("libvirt capabilities: ok (cached lookup \(lookup))")
            }
            await connection.close()
        } catch {
            print("libvirt \(libvirt): FAILED: \(error)")
            failed = true
        }
        if failed { throw ExitCode.failure }
    }

    /// A cached lookup takes milliseconds; a probe of QEMU takes seconds.
    static let slowCapabilitiesLookup = Duration.seconds(1)
}
