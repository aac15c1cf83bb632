import Cluster
import Foundation
import Harness
import Testing

@testable import HAService

#if canImport(Glibc)
import Glibc
#endif

/// The bundle's redaction and its guard against a peer's paths; vmhad's journald lines.
@Suite struct SupportBundleUnitTests {
    @Test func secretLookingValuesAreRedactedAndTheKeyFilePathKept() {
        let config = """
            [cluster]
            name = "c"
            key_file = "/etc/vmha/cluster.key"
            [console]
            password = "hunter2"
            session_secret = "s3cr3t"
            api_token="tok"
            tls_private_key = "PEM"
            # secret = "only a comment"
            """
        let redacted = SupportBundle.redact(configuration: config)
        for secret in ["hunter2", "s3cr3t", "\"tok\"", "PEM"] { #expect(!redacted.contains(secret), "\(secret) left in \(redacted)") }
        #expect(redacted.contains("key_file = \"/etc/vmha/cluster.key\""))
        #expect(redacted.contains("password = \"<redacted>\""))
        #expect(redacted.contains("# secret = \"only a comment\""))
        #expect(redacted.split(separator: "\n").count == config.split(separator: "\n").count)
    }

    @Test func theKeyIsScrubbedInEverySpelling() {
        let key = (0..<32).map { UInt8(truncatingIfNeeded: $0 * 37 + 11) }
        let hex = key.map { String(format: "%02x", $0) }.joined()
        let files = [
            SupportFile(path: "a", data: Data("before \(hex) after".utf8)),
            SupportFile(path: "b", data: Data([1, 2] + key + [3] + key)),
            SupportFile(path: "c", data: Data("x\(Data(key).base64EncodedString())y\(hex.uppercased())".utf8)),
            SupportFile(path: "d", data: Data("nothing here".utf8)),
        ]
        let scrubbed = SupportBundle.scrub(files, secret: key)
        #expect(String(decoding: scrubbed[0].data, as: UTF8.self) == "before <redacted> after")
        #expect(Array(scrubbed[1].data) == [1, 2] + Array("<redacted>".utf8) + [3] + Array("<redacted>".utf8))
        #expect(String(decoding: scrubbed[2].data, as: UTF8.self) == "x<redacted>y<redacted>")
        #expect(scrubbed[3] == files[3])
    }

    /// A peer's part can only write under its own directory.
    @Test func aPeersUnsafePathsAreRefused() throws {
        for path in ["../etc/passwd", "/etc/passwd", "a/../../b", "", "a//b", "./a"] {
            let bytes = SupportBundle.encode([SupportFile(path: path, text: "x")])
            #expect(throws: SupportBundleError.self, "\(path)") { _ = try SupportBundle.decode(bytes) }
        }
        #expect(throws: (any Error).self) { _ = try SupportBundle.decode(Array("not json".utf8)) }
        let fine = try SupportBundle.decode(SupportBundle.encode([SupportFile(path: "domains/vm1.xml", text: "<domain/>")]))
        #expect(fine.first?.path == "domains/vm1.xml")
    }

    /// Under systemd (stderr is the stream `JOURNAL_STREAM` names) each line is `<priority>label:
    /// message`, without a timestamp; otherwise the usual timestamped lines.
    @Test(.timeLimit(.minutes(1))) func vmhadWritesJournalLinesOnlyToTheJournal() async throws {
        let directory = NSTemporaryDirectory() + "vmha-journal-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try Data(count: 1 << 20).write(to: URL(fileURLWithPath: "\(directory)/image"))

        func run(journal: Bool, matching: Bool) async throws -> String {
            let logPath = "\(directory)/log-\(journal)-\(matching)"
            FileManager.default.createFile(atPath: logPath, contents: nil)
            var info = stat()
            #expect(stat(logPath, &info) == 0)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: try builtProduct("vmhad"))
            let socket = "\(directory)/nbd-\(journal)-\(matching).sock"
            process.arguments = ["--export", "d0:\(directory)/image:\(socket)", "--socket-mode", "600"]
            var environment = ProcessInfo.processInfo.environment
            environment["JOURNAL_STREAM"] = nil
            if journal { environment["JOURNAL_STREAM"] = matching ? "\(info.st_dev):\(info.st_ino)" : "1:2" }
            process.environment = environment
            process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
            try process.run()
            for _ in 0..<500 where access(socket, F_OK) != 0 { try await Task.sleep(for: .milliseconds(10)) }
            kill(process.processIdentifier, SIGTERM)
            process.waitUntilExit()
            return try String(contentsOfFile: logPath, encoding: .utf8)
        }

        let journal = try await run(journal: true, matching: true)
        let lines = journal.split(separator: "\n")
        #expect(!lines.isEmpty)
        #expect(lines.allSatisfy { $0.hasPrefix("<6>vmhad: ") || $0.hasPrefix("<5>vmhad: ") || $0.hasPrefix("<4>vmhad: ") }, "\(journal)")
        #expect(journal.range(of: #"\d{4}-\d\d-\d\dT\d\d:"#, options: .regularExpression) == nil, "a timestamp in \(journal)")
        for other in [try await run(journal: false, matching: false), try await run(journal: true, matching: false)] {
            #expect(!other.contains("<6>"), "\(other)")
            #expect(other.split(separator: "\n").first?.contains(" info vmhad:") == true, "\(other)")
        }
    }
}
