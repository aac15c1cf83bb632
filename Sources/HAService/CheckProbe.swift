import Cluster
import Foundation
import Libvirt
import Locking
import NIOCore
import NIOPosix
import Sockets

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
        case .script(let command): await script(command, timeout: timeout, environment: ["VMHA_VM": vm, "VMHA_HOST": host])
        case .tcp(let address): await tcp(address, timeout: timeout)
        case .ping(let address): await ping(address, timeout: timeout)
        case .agent: await agent(libvirt, domain: domain, timeout: timeout)
        }
    }

    static func run(_ probe: HostConfiguration.Check.Probe, timeout: Duration, host: String) async -> Result {
        switch probe {
        case .script(let command): await script(command, timeout: timeout, environment: ["VMHA_HOST": host])
        case .interface(let name): interface(name)
        }
    }

    /// The interface is administratively up (`IFF_UP`) and operational (`IFF_RUNNING`: carrier,
    /// RFC 2863 operstate up). Asked with `SIOCGIFFLAGS` on a socket, which answers for vmhad's
    /// own network namespace (`/sys/class/net` shows the namespace sysfs was mounted in).
    static func interface(_ name: String) -> Result {
        do {
            let flags = try InterfaceFlags.read(name)
            if flags & Int32(IFF_UP) == 0 { return Result(healthy: false, detail: "\(name) is down") }
            if flags & Int32(IFF_RUNNING) == 0 { return Result(healthy: false, detail: "\(name) has no carrier") }
            return Result(healthy: true, detail: "\(name) up, carrier")
        } catch where error.errno == .operationNotSupportedByDevice {
            return Result(healthy: false, detail: "no interface \(name) here")
        } catch {
            return Result(healthy: false, detail: "\(name): \(error)")
        }
    }

    /// One ICMP echo with iputils `ping` (numeric, one packet, its wait rounded up to whole
    /// seconds by ping's `-W`, and the timeout enforced here as for a script).
    static func ping(_ address: String, timeout: Duration) async -> Result {
        let (seconds, attoseconds) = timeout.components
        let wait = max(1, seconds + (attoseconds > 0 ? 1 : 0))
        let result = await command(["ping", "-n", "-q", "-c", "1", "-W", "\(wait)", "--", address], timeout: timeout, environment: [:])
        switch result {
        case .exited(0): return Result(healthy: true, detail: "\(address) answered")
        case .exited(1): return Result(healthy: false, detail: "no echo reply from \(address)")
        case .exited(let status): return Result(healthy: false, detail: "ping \(address) failed (exit \(status))")
        case .timedOut: return Result(healthy: false, detail: "no echo reply from \(address) within \(timeout)")
        case .cannotRun: return Result(healthy: false, detail: "cannot run ping (install iputils-ping)")
        }
    }

    /// `/bin/sh -c COMMAND` with `VMHA_VM` and `VMHA_HOST` (a host check: `VMHA_HOST`); exit 0
    /// is healthy.
    static func script(_ command: String, timeout: Duration, environment: [String: String]) async -> Result {
        switch await Self.command(["/bin/sh", "-c", command], timeout: timeout, environment: environment) {
        case .exited(0): Result(healthy: true, detail: "script exit 0")
        case .exited(let status): Result(healthy: false, detail: "script exit \(status)")
        case .timedOut: Result(healthy: false, detail: "script timed out after \(timeout)")
        case .cannotRun: Result(healthy: false, detail: "cannot run /bin/sh")
        }
    }

    enum CommandResult: Equatable {
        case exited(Int32), timedOut, cannotRun
    }

    /// Runs `arguments` (the first found on PATH) with `environment` added. Foundation starts it
    /// in a process group of its own: past the timeout the whole group is killed (SIGKILL) — the
    /// command and whatever it started (killing a shell alone left its children running, and
    /// Foundation reported the exit only when they ended).
    static func command(_ arguments: [String], timeout: Duration, environment: [String: String]) async -> CommandResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
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
        guard let status else { return .cannotRun }
        if state.withLock({ $0.timedOut }) { return .timedOut }
        // env's own "not found" (127) and "cannot run" (126): the program is missing.
        if arguments.first != "/bin/sh", status == 127 || status == 126 { return .cannotRun }
        return .exited(status)
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
