import Cluster
import Dispatch
import Foundation
import Libvirt
import Logging
import Volume

#if canImport(Glibc)
import Glibc
#endif

/// One file of a support bundle, relative to its host's directory in the archive.
public struct SupportFile: Codable, Sendable, Equatable {
    public var path: String
    public var data: Data
    public init(path: String, data: Data) {
        self.path = path
        self.data = data
    }
    public init(path: String, text: String) { self.init(path: path, data: Data(text.utf8)) }
}

/// A host's part of `vmha support-bundle` (crm_report's idea): what support needs to see after
/// the fact, collected the same way by `vmha` for its own host and by the peer's vmhad when
/// asked over the authenticated peer link. Best effort: whatever cannot be read is a line
/// saying so in the part, never a failure.
public struct SupportBundle: Sendable {
    public var host: String
    public var configPath: String
    public var configuration: ClusterConfiguration
    /// Seconds of history (events, log); 0: all there is.
    public var sinceSeconds: UInt64
    /// The cluster key: its bytes (and their hex and base64 forms) are scrubbed from every file.
    public var key: [UInt8]

    public init(host: String, configPath: String, configuration: ClusterConfiguration, sinceSeconds: UInt64, key: [UInt8]) {
        self.host = host
        self.configPath = configPath
        self.configuration = configuration
        self.sinceSeconds = sinceSeconds
        self.key = key
    }

    /// The most of a log kept (its newest part).
    public static let logLimit = 16 << 20
    /// vmhad's own log file when it does not run under journald (`VMHADaemon`).
    public static func logPath(stateDirectory: String) -> String { "\(stateDirectory)/vmhad.log" }

    /// Collects this host's part. `status` is what vmhad reported (nil with why, if it could not
    /// be asked); `libvirt` gives the domains' live XML.
    public func collect(status: ClusterStatusReport?, statusProblem: String?, libvirt: LibvirtConnection?) async -> [SupportFile] {
        var files: [SupportFile] = []
        files.append(SupportFile(path: "config.toml", text: Self.redact(configuration: (try? String(contentsOfFile: configPath, encoding: .utf8)) ?? "# cannot read \(configPath)\n")))
        if let status {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            files.append(SupportFile(path: "status.json", data: (try? encoder.encode(status)) ?? Data()))
            files.append(SupportFile(path: "witness.txt", text: """
                witness: \(status.witness ?? "none configured")
                lease: \(status.lease)
                fenced: \(status.fenced)
                peer: \(status.peer) \(status.peerState)
                (the witness's own state file is on the witness host: vmha witness --state-file)

                """))
        } else {
            files.append(SupportFile(path: "status.unavailable.txt", text: "vmhad could not be asked for its status: \(statusProblem ?? "unknown")\n"))
        }
        files.append(events())
        files.append(await log())
        for vm in configuration.vms {
            let configured = (try? String(contentsOfFile: vm.domainXMLPath, encoding: .utf8)) ?? "<!-- cannot read \(vm.domainXMLPath) -->\n"
            files.append(SupportFile(path: "domains/\(vm.name).xml", text: configured))
            if let libvirt, let name = try? DomainXML(configured).name {
                let live: String
                do { live = try await libvirt.domain(named: name).xmlDescription() } catch { live = "<!-- libvirt: \(error) -->\n" }
                files.append(SupportFile(path: "domains/\(vm.name).live.xml", text: live))
            }
            for (i, disk) in vm.disks.enumerated() { files.append(contentsOf: Self.metadata(vm: vm.name, disk: i, path: disk.metadataPath)) }
        }
        files.append(SupportFile(path: "versions.txt", text: await Self.commands([
            ["vmha-version"], ["uname", "-a"], ["libvirtd", "--version"], ["qemu-system-x86_64", "--version"],
            ["dpkg-query", "-W", "liburing2", "libvirt0", "qemu-system-x86", "qemu-utils"],
        ])))
        files.append(SupportFile(path: "network.txt", text: await Self.commands([
            ["ip", "-d", "address"], ["ip", "route"], ["ip", "-6", "route"], ["tc", "-s", "qdisc"], ["ss", "-tuan"],
        ])))
        return Self.scrub(files, secret: key)
    }

    /// The configuration with every value of a secret-looking key replaced (the cluster key
    /// itself lives in `key_file`, whose path is kept; its contents are never read into a bundle).
    public static func redact(configuration text: String) -> String {
        let secretWords = ["secret", "password", "passwd", "token", "private", "credential"]
        return text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            guard let equals = line.firstIndex(of: "="), !line.trimmingCharacters(in: .whitespaces).hasPrefix("#") else { return String(line) }
            let name = line[..<equals].trimmingCharacters(in: .whitespaces).lowercased()
            let isSecret = secretWords.contains { name.contains($0) } || name == "key" || (name.hasSuffix("_key") && !name.hasSuffix("key_file"))
            return isSecret ? "\(line[..<equals])= \"<redacted>\"" : String(line)
        }.joined(separator: "\n")
    }

    /// Replaces the secret's bytes, and its hex and base64 spellings, wherever they occur.
    public static func scrub(_ files: [SupportFile], secret: [UInt8]) -> [SupportFile] {
        guard secret.count >= 8 else { return files }
        let hex = secret.map { String(format: "%02x", $0) }.joined()
        let forms = [secret, Array(hex.utf8), Array(hex.uppercased().utf8), Array(Data(secret).base64EncodedString().utf8)]
            + (String(bytes: secret, encoding: .utf8).map { [Array($0.trimmingCharacters(in: .whitespacesAndNewlines).utf8)] } ?? [])
        let marker = Array("<redacted>".utf8)
        return files.map { file in
            var bytes = Array(file.data)
            for form in forms where form.count >= 8 { bytes = replacing(form, with: marker, in: bytes) }
            return SupportFile(path: file.path, data: Data(bytes))
        }
    }

    /// Every occurrence of `needle` replaced (memchr finds the candidates: logs are megabytes).
    private static func replacing(_ needle: [UInt8], with replacement: [UInt8], in haystack: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var copied = 0, start = 0
        haystack.withUnsafeBytes { hay in
            needle.withUnsafeBytes { pin in
                while hay.count - start >= pin.count, let hit = memchr(hay.baseAddress! + start, Int32(pin[0]), hay.count - start - pin.count + 1) {
                    let at = hay.baseAddress!.distance(to: UnsafeRawPointer(hit))
                    if memcmp(hit, pin.baseAddress!, pin.count) == 0 {
                        out += hay[copied..<at]
                        out += replacement
                        copied = at + pin.count
                        start = copied
                    } else {
                        start = at + 1
                    }
                }
            }
        }
        guard copied > 0 else { return haystack }
        out += haystack[copied...]
        return out
    }

    /// The event history (both files), newest `sinceSeconds` only if set.
    func events() -> SupportFile {
        let path = "\(configuration.stateDirectory)/events.jsonl"
        let (events, skipped) = EventHistory.load(path: path)
        let cutoff = sinceSeconds == 0 ? 0 : Date().timeIntervalSince1970 - Double(sinceSeconds)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var data = Data()
        for event in events where event.time >= cutoff {
            guard let line = try? encoder.encode(event) else { continue }
            data += line
            data.append(UInt8(ascii: "\n"))
        }
        if events.isEmpty && skipped == 0 && !FileManager.default.fileExists(atPath: path) {
            return SupportFile(path: "events.unavailable.txt", text: "no event history at \(path)\n")
        }
        return SupportFile(path: "events.jsonl", data: data)
    }

    /// vmhad's log: the journal's when it runs under systemd, else its own log file.
    func log() async -> SupportFile {
        var journal = ["journalctl", "--unit", "vmhad.service", "--no-pager", "--output", "short-iso-precise", "--quiet"]
        if sinceSeconds > 0 { journal += ["--since", "-\(sinceSeconds)s"] }
        if let (status, output) = await Self.run(journal), status == 0, !output.isEmpty {
            return SupportFile(path: "vmhad.journal.txt", data: Data(output.suffix(Self.logLimit)))
        }
        let path = Self.logPath(stateDirectory: configuration.stateDirectory)
        var data = Data()
        for file in [path + ".1", path] { data += FileManager.default.contents(atPath: file) ?? Data() }
        if data.isEmpty { return SupportFile(path: "vmhad.log.unavailable.txt", text: "no vmhad journal entries and no \(path)\n") }
        return SupportFile(path: "vmhad.log", data: Data(data.suffix(Self.logLimit)))
    }

    static func metadata(vm: String, disk: Int, path: String) -> [SupportFile] {
        let name = "volumes/\(vm)-disk\(disk)"
        do {
            let inspection = try MetadataInspection.read(path: path)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            return [
                SupportFile(path: "\(name).txt", text: "\(path)\n\(inspection.summary)\n"),
                SupportFile(path: "\(name).json", data: (try? encoder.encode(inspection)) ?? Data()),
            ]
        } catch {
            return [SupportFile(path: "\(name).txt", text: "\(path): \(error)\n")]
        }
    }

    /// Each command's output under a `$ command` line; `vmha-version` is this build's.
    static func commands(_ list: [[String]]) async -> String {
        var text = ""
        for argv in list {
            text += "$ \(argv.joined(separator: " "))\n"
            if argv == ["vmha-version"] {
                text += "\(VMHAVersion.current)\n\n"
                continue
            }
            if let (status, output) = await run(argv) {
                text += String(decoding: output, as: UTF8.self)
                if status != 0 { text += "(exit status \(status))\n" }
            } else {
                text += "(not found)\n"
            }
            text += "\n"
        }
        return text
    }

    /// Runs a command (stdout and stderr together) off the cooperative pool; nil if it cannot start.
    static func run(_ argv: [String]) async -> (Int32, Data)? {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
                process.arguments = argv
                let pipe = Pipe()
                process.standardOutput = pipe
                process.standardError = pipe
                process.standardInput = FileHandle.nullDevice
                do { try process.run() } catch {
                    continuation.resume(returning: nil)
                    return
                }
                let output = pipe.fileHandleForReading.readDataToEndOfFile()
                process.waitUntilExit()
                // env's 127: the command is not installed.
                continuation.resume(returning: process.terminationStatus == 127 ? nil : (process.terminationStatus, output))
            }
        }
    }

    /// A part as it crosses the peer link (JSON; file contents base64).
    public static func encode(_ files: [SupportFile]) -> [UInt8] { Array((try? JSONEncoder().encode(files)) ?? Data("[]".utf8)) }

    public static func decode(_ bytes: [UInt8]) throws -> [SupportFile] {
        let files = try JSONDecoder().decode([SupportFile].self, from: Data(bytes))
        for file in files where !isSafe(file.path) { throw SupportBundleError("the peer sent an unsafe path: \(file.path)") }
        return files
    }

    /// Relative, no `..`: a part can only write under its host's directory.
    public static func isSafe(_ path: String) -> Bool {
        !path.isEmpty && !path.hasPrefix("/") && !path.split(separator: "/", omittingEmptySubsequences: false).contains { $0 == ".." || $0 == "." || $0.isEmpty }
    }

    /// Writes the files under `directory`.
    public static func write(_ files: [SupportFile], to directory: String) throws {
        for file in files {
            guard isSafe(file.path) else { throw SupportBundleError("unsafe path \(file.path)") }
            let url = URL(fileURLWithPath: directory).appendingPathComponent(file.path)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try file.data.write(to: url)
        }
    }
}

public struct SupportBundleError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
