import Cluster
import Foundation
import Libvirt
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

    /// `libvirt` and `domain` (the domain's name on this host) are for the `agent` kind.
    static func run(
        _ probe: VMConfiguration.Check.Probe, timeout: Duration, vm: String, host: String, libvirt: LibvirtConnection?, domain: String
    ) async -> Result {
        switch probe {
        case .script(let command): await script(command, timeout: timeout, vm: vm, host: host)
        case .tcp(let address): await tcp(address, timeout: timeout)
        case .agent: await agent(libvirt, domain: domain, timeout: timeout)
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

    /// Domains (libvirt URI and name) with a `guest-ping` still in libvirt's hands.
    private static let agentCalls = Locked(Set<String>())

    /// `guest-ping` to the guest's qemu-guest-agent through libvirt (`virDomainQemuAgentCommand`,
    /// on the blocking-call queue, never a pool thread). libvirt counts its timeouts in whole
    /// seconds and, after a timeout, spends up to 5 s more on a `guest-sync`, so the verdict does
    /// not wait for it: no answer within `timeout` is a failure at once. The call runs on until libvirt
    /// gives up; while it does, the next probe of that domain fails without a call of its own, so
    /// a hung agent never piles calls up in libvirtd (each would hold one of its workers).
    static func agent(_ libvirt: LibvirtConnection?, domain: String, timeout: Duration) async -> Result {
        guard let libvirt else { return Result(healthy: false, detail: "guest-ping: no libvirt connection") }
        let key = "\(libvirt.uri)\u{0}\(domain)"
        guard agentCalls.withLock({ $0.insert(key).inserted }) else {
            return Result(healthy: false, detail: "guest-ping: the last one is still unanswered")
        }
        let (seconds, attoseconds) = timeout.components
        let libvirtSeconds = Int32(clamping: max(1, seconds + (attoseconds > 0 ? 1 : 0)))
        let first = Locked<CheckedContinuation<Result, Never>?>(nil)
        return await withCheckedContinuation { continuation in
            first.withLock { $0 = continuation }
            Task {
                defer { _ = agentCalls.withLock { $0.remove(key) } }
                let result: Result
                do {
                    _ = try await libvirt.domain(named: domain).agentCommand(#"{"execute":"guest-ping"}"#, timeout: libvirtSeconds)
                    result = Result(healthy: true, detail: "guest-ping answered")
                } catch {
                    result = Result(healthy: false, detail: "guest-ping: \(error)")
                }
                first.withLock { $0.take() }?.resume(returning: result)
            }
            Task {
                try? await Task.sleep(for: timeout)
                first.withLock { $0.take() }?.resume(returning: Result(healthy: false, detail: "guest-ping: no answer within \(timeout)"))
            }
        }
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
