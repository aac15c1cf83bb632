import ArgumentParser
import Cluster
import Foundation
import Sockets
import SystemCalls
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Where to find the local vmhad's control socket.
struct ControlOptions: ParsableArguments {
    @Option(help: "The cluster configuration (its state_directory holds control.sock).")
    var config: String = "/etc/vmha/vmha.toml"

    @Option(help: "The control socket (overrides --config).")
    var socket: String?

    func socketPath() throws -> String {
        if let socket { return socket }
        guard let text = try? String(contentsOfFile: config, encoding: .utf8) else {
            FileHandle.standardError.write(Data("vmha: \(config): cannot read (give --config or --socket)\n".utf8))
            throw ExitCode(78)
        }
        do {
            return "\(try ClusterConfiguration.parse(text).stateDirectory)/control.sock"
        } catch {
            FileHandle.standardError.write(Data("vmha: \(config): \(error)\n".utf8))
            throw ExitCode(78)
        }
    }

    /// One request, one response; an unreachable vmhad is exit 69 with the reason on stderr.
    func send(_ request: ControlRequest) throws -> ControlResponse {
        let path = try socketPath()
        do {
            return try ControlClient.send(request, socket: path)
        } catch {
            FileHandle.standardError.write(Data("vmha: cannot reach vmhad at \(path): \(error.reason)\n".utf8))
            throw ExitCode(69)
        }
    }
}

/// The client side of the control socket.
enum ControlClient {
    struct Unavailable: Error, CustomStringConvertible {
        var reason: String
        var description: String { reason }
    }

    static func send(_ request: ControlRequest, socket path: String) throws(Unavailable) -> ControlResponse {
        let fd: FileDescriptor
        do { fd = try UnixSocket.socket() } catch { throw Unavailable(reason: "\(error)") }
        defer { try? fd.close() }
        do {
            _ = try UnixSocket.withAddress(path) { (address) throws(SystemCallError) in
                // Not retried on EINTR: an interrupted connect goes on in the kernel (EALREADY).
                try Syscall.call("connect", retryOnInterrupt: false) {
                    connect(fd.rawValue, address.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(address.count))
                }
            }
        } catch {
            throw Unavailable(reason: "\(error)")
        }
        guard let encoded = try? JSONEncoder().encode(request) else { throw Unavailable(reason: "cannot encode the request") }
        var bytes = Array(encoded)
        bytes.append(UInt8(ascii: "\n"))
        var offset = 0
        while offset < bytes.count {
            let n = try? bytes[offset...].withUnsafeBytes { (chunk) throws(SystemCallError) in
                try Syscall.call("write") { write(fd.rawValue, chunk.baseAddress, chunk.count) }
            }
            guard let n, n > 0 else { throw Unavailable(reason: "write failed") }
            offset += n
        }
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = try? buffer.withUnsafeMutableBytes { (space) throws(SystemCallError) in
                try Syscall.call("read") { read(fd.rawValue, space.baseAddress, space.count) }
            }
            guard let n, n > 0 else { break }
            answer += buffer[0..<n]
            if answer.last == UInt8(ascii: "\n") { break }
        }
        guard let response = try? JSONDecoder().decode(ControlResponse.self, from: Data(answer)) else { throw Unavailable(reason: "no answer") }
        return response
    }
}

func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

func failIfRefused(_ response: ControlResponse) throws {
    if !response.ok {
        FileHandle.standardError.write(Data("vmha: \(response.error ?? "refused")\n".utf8))
        throw ExitCode(1)
    }
}

func bytesText(_ b: UInt64) -> String {
    b >= 1 << 30 ? String(format: "%.1f GiB", Double(b) / Double(1 << 30)) : String(format: "%.1f MiB", Double(b) / Double(1 << 20))
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Hosts, peer and witness state, and per VM: module state, replica state, where it runs, resync progress.")
    @OptionGroup var control: ControlOptions
    @Flag(help: "Machine-readable output.") var json = false

    func run() throws {
        let response = try control.send(ControlRequest(command: "status"))
        try failIfRefused(response)
        guard let s = response.status else { throw ExitCode(1) }
        if json { try printJSON(s); return }
        print("host \(s.host)  peer \(s.peer): \(s.peerState) (networks: \(s.networks.joined(separator: ", ")))")
        print("witness \(s.witness ?? "none")  lease: \(s.lease)\(s.fenced ? "  FENCED (domains paused)" : "")")
        for c in s.hostChecks ?? [] { print("host check \(c.name): \(c.health)\(c.lastResult.map { " (\($0))" } ?? "")") }
        if let failing = s.peerFailingHostChecks { print("peer's failed host checks: \(failing.joined(separator: ", "))") }
        for vm in s.vms {
            let peer = vm.peerState.map { "peer \($0)/\(vm.peerReplica ?? "?")" } ?? "peer ?"
            print("  \(vm.name): \(vm.state)/\(vm.replica)  \(peer)  runs on \(vm.runsOn ?? "-")  domain \(vm.domain ?? "-")")
            for v in vm.volumes {
                var line = "    \(v.name) \(v.role) link=\(v.link) dirty=\(bytesText(v.dirtyBytes))"
                if v.link == "syncSource" || v.link == "syncTarget" {
                    line += " resync \(bytesText(v.resyncDoneBytes))/\(bytesText(v.resyncTotalBytes))"
                    if let rate = v.resyncBytesPerSecond { line += " at \(bytesText(UInt64(rate)))/s" }
                    if let eta = v.resyncETASeconds { line += ", ETA \(Int(eta.rounded(.up))) s" }
                }
                print(line)
                if v.link == "splitBrain", let e = v.lastError { print("      \(e)") }
                if let r = v.splitBrainResolved { print("      split brain settled by policy: \(r)") }
            }
            for c in vm.checks ?? [] { print("    check \(c.name): \(c.health)\(c.lastResult.map { " (\($0))" } ?? "")") }
            if let e = vm.lastError { print("    error: \(e)") }
            if let n = vm.notStarted { print("    not started: \(n)") }
        }
        for e in s.events.suffix(5) { print("  event: \(e)") }
    }
}

struct Migrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Planned switchover: clean shutdown, wait for the target's replica, role swap, start on the target; with --live, libvirt live migration (no reboot).")
    @OptionGroup var control: ControlOptions
    @Argument(help: "The VM.") var vm: String
    @Option(help: "The host to run it on.") var to: String
    @Flag(help: "Wait for an Inconsistent/resyncing target to become UpToDate instead of refusing.") var force = false
    @Flag(help: "Live migration: the guest keeps running, its disks change primary under it.") var live = false

    func run() throws {
        let response = try control.send(ControlRequest(command: "migrate", vm: vm, to: to, force: force, live: live))
        try failIfRefused(response)
        print(response.message ?? "ok")
    }
}

struct Resync: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Start a resync of a VM's disks (on the host that runs it); shows progress.")
    @OptionGroup var control: ControlOptions
    @Argument(help: "The VM.") var vm: String
    @Flag(help: "Every block, not only the bitmap.") var full = false
    @Flag(help: "Every block, compared by SHA-256 first: only blocks that differ cross the link.") var checksum = false
    @Flag(help: "Online verify: compare every block by SHA-256, change nothing, mark differences for the next resync.") var verify = false
    @Option(help: "A new maximum rate for the VM's resyncs, bytes per second, the running one at once (0: none). Without --full, --checksum or --verify it starts no resync.") var rate: UInt64?
    @Flag(help: "Wait until the resync has finished.") var wait = false
    @Flag(help: "Machine-readable progress lines.") var json = false

    struct Progress: Codable { var vm: String; var doneBytes: UInt64; var totalBytes: UInt64; var bytesPerSecond: Double; var etaSeconds: Double?; var finished: Bool }

    func run() throws {
        let before = try control.send(ControlRequest(command: "status")).status?.vms.first { $0.name == vm }
        let completedBefore = before?.volumes.map(\.resyncsCompleted).reduce(0, +) ?? 0
        guard [full, checksum, verify].filter({ $0 }).count <= 1 else { throw ValidationError("--full, --checksum and --verify exclude each other") }
        let mode = full ? "full" : checksum ? "checksum" : verify ? "verify" : "incremental"
        var request = ControlRequest(command: "resync", vm: vm, mode: rate != nil && !(full || checksum || verify) ? nil : mode)
        request.rate = rate
        let response = try control.send(request)
        try failIfRefused(response)
        if !json { print(response.message ?? "ok") }
        if request.mode == nil { return }
        let start = Date()
        repeat {
            Thread.sleep(forTimeInterval: 1)
            guard let s = try control.send(ControlRequest(command: "status")).status?.vms.first(where: { $0.name == vm }) else { throw ExitCode(1) }
            let done = s.volumes.map(\.resyncDoneBytes).reduce(0, +), total = s.volumes.map(\.resyncTotalBytes).reduce(0, +)
            let finished = s.volumes.map(\.resyncsCompleted).reduce(0, +) > completedBefore && !s.volumes.contains { $0.link == "syncSource" }
            let rate = Double(done) / max(0.001, Date().timeIntervalSince(start))
            let eta = rate > 0 && total >= done ? Double(total - done) / rate : nil
            let p = Progress(vm: vm, doneBytes: done, totalBytes: total, bytesPerSecond: rate, etaSeconds: finished ? 0 : eta, finished: finished)
            if json {
                print(String(decoding: try JSONEncoder().encode(p), as: UTF8.self))
            } else {
                print("\(vm): \(bytesText(done))/\(bytesText(total)) \(bytesText(UInt64(rate)))/s ETA \(eta.map { String(format: "%.0f s", $0) } ?? "?")\(finished ? " finished" : "")")
            }
            if finished || !wait { break }
        } while true
    }
}

struct Place: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Plan (and with no --dry-run, apply as switchovers) a balanced placement of the VMs.")
    @OptionGroup var control: ControlOptions
    @Argument(help: "Only these VMs may move (default: all).") var vms: [String] = []
    @Option(help: "Put the named VMs on this host.") var on: String?
    @Flag(help: "Show the plan only.") var dryRun = false
    @Flag(help: "Machine-readable output.") var json = false

    func validate() throws {
        if on != nil && vms.isEmpty { throw ValidationError("--on needs the VMs to put there") }
    }

    func run() throws {
        let response = try control.send(ControlRequest(command: "place", dryRun: dryRun, vms: vms.isEmpty ? nil : vms, on: on))
        try failIfRefused(response)
        guard let p = response.place else { throw ExitCode(1) }
        if json { try printJSON(p); return }
        for h in p.hosts { print("\(h.name): \(h.vcpus) vCPU, \(h.memoryMiB) MiB (\(h.source))") }
        print("score \(p.scoreBefore) -> \(p.scoreAfter); \(p.moves.isEmpty ? "no moves" : "moves:")")
        for m in p.moves { print("  \(m)") }
        for u in p.unplaced { print("  unplaced: \(u)") }
        for a in p.applied { print("  applied \(a)") }
        if p.applied.contains(where: { $0.contains("failed") }) { throw ExitCode(1) }
    }
}

struct Add: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Protect one more VM: adds it to this host's configuration file and starts its module.",
        discussion: "Run the same command on both hosts (each has its own file); the VM starts once both know it.")
    @OptionGroup var control: ControlOptions
    @Argument(help: "The VM's name.") var vm: String
    @Option(help: "The libvirt domain XML file.") var domainXML: String
    @Option(help: "A replicated disk: TARGET:IMAGE:METADATA (TARGET is the domain's target device, e.g. vda, or its source path). Repeat for more disks.")
    var disk: [String] = []
    @Option(help: "Failover order, highest first.") var priority = 0
    @Option(help: "The host it should run on.") var preferredHost: String?
    @Option(help: "automatic or manual.") var failback = "manual"

    func run() throws {
        guard !disk.isEmpty else { throw ValidationError("give at least one --disk TARGET:IMAGE:METADATA") }
        var disks: [VMConfiguration.Disk] = []
        for spec in disk {
            let parts = spec.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 3, parts.allSatisfy({ !$0.isEmpty }) else {
                throw ValidationError("--disk \(spec): expected TARGET:IMAGE:METADATA")
            }
            disks.append(.init(selector: parts[0].hasPrefix("/") ? .source(parts[0]) : .target(parts[0]), imagePath: parts[1], metadataPath: parts[2]))
        }
        guard let policy = VMConfiguration.Failback(rawValue: failback) else { throw ValidationError("--failback: automatic or manual") }
        let entry = VMConfiguration(
            name: vm, domainXMLPath: domainXML, disks: disks, priority: priority, preferredHost: preferredHost, failback: policy)
        let response = try control.send(ControlRequest(command: "add", vmTOML: ConfigurationEditor.adding(entry, to: "")))
        try failIfRefused(response)
        print(response.message ?? "ok")
    }
}

struct Remove: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stop protecting a VM on this host: removes it from the configuration file; images and metadata stay.")
    @OptionGroup var control: ControlOptions
    @Argument(help: "The VM.") var vm: String
    @Flag(help: "If it runs on this host, shut it down first (otherwise that is refused).") var stop = false

    func run() throws {
        let response = try control.send(ControlRequest(command: "remove", vm: vm, stop: stop))
        try failIfRefused(response)
        print(response.message ?? "ok")
    }
}
