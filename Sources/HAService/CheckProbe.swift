import Cluster
import Foundation
import Locking
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// One probe of a VM check. Never throws: a probe that cannot run is a failed check, with why.
enum CheckProbe {
    struct Result: Sendable, Equatable {
        var healthy: Bool
        var detail: String
    }

    static func run(_ probe: VMConfiguration.Check.Probe, timeout: Duration, vm: String, host: String) async -> Result {
        switch probe {
        case .script(let command): await script(command, timeout: timeout, vm: vm, host: host)
        case .tcp(let address): await tcp(address, timeout: timeout)
        }
    }

    /// `/bin/sh -c COMMAND` with `VMHA_VM` and `VMHA_HOST`; exit 0 is healthy. Foundation starts
    /// it in a process group of its own: past the timeout the whole group is killed (SIGKILL) —
    /// the shell and whatever it started (killing the shell alone left its children running,
    /// and Foundation reported the exit only when they ended) — and the check failed.
    static func script(_ command: String, timeout: Duration, vm: String, host: String) async -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        var environment = ProcessInfo.processInfo.environment
        environment["VMHA_VM"] = vm
        environment["VMHA_HOST"] = host
        process.environment = environment
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        // exited, killed by the timeout
        let state = Locked((exited: false, timedOut: false))
        let status: Int32? = await withCheckedContinuation { continuation in
            process.terminationHandler = { finished in
                state.withLock { $0.exited = true }
                continuation.resume(returning: finished.terminationStatus)
            }
            do {
                try process.run()
            } catch {
                continuation.resume(returning: nil)
                return
            }
            let pid = process.processIdentifier
            Task {
                try? await Task.sleep(for: timeout)
                let kill = state.withLock { s -> Bool in
                    if s.exited { return false }
                    s.timedOut = true
                    return true
                }
                if kill { _ = Glibc.kill(-pid, SIGKILL) }
            }
        }
        guard let status else { return Result(healthy: false, detail: "cannot run /bin/sh") }
        if state.withLock({ $0.timedOut }) { return Result(healthy: false, detail: "script timed out after \(timeout)") }
        return status == 0 ? Result(healthy: true, detail: "script exit 0") : Result(healthy: false, detail: "script exit \(status)")
    }

    /// A TCP connect from this host to the guest's service, closed at once.
    static func tcp(_ address: EndpointAddress, timeout: Duration) async -> Result {
        let (seconds, attoseconds) = timeout.components
        let bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.milliseconds(seconds * 1000 + attoseconds / 1_000_000_000_000_000))
        do {
            let channel = try await bootstrap.connect(host: address.host, port: address.port).get()
            try? await channel.close()
            return Result(healthy: true, detail: "connected to \(address)")
        } catch {
            return Result(healthy: false, detail: "connect to \(address): \(error)")
        }
    }
}
