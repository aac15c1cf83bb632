import Foundation
import Harness
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `vmha demo --json --console` end to end, as a newcomer runs it (with the build CI has): the
/// figures it prints must be the truth the issue asked for, the consoles it announces must answer
/// on 127.0.0.1 while it runs and after, and Ctrl-C must tear everything down.
@Suite("vmha demo", .serialized)
struct DemoTests {
    struct Result: Decodable {
        var failover_seconds: Double
        var lost_records: Int
        var acknowledged_records: Int
        var resync_bytes: UInt64
        var written_while_away_bytes: UInt64
        var dual_primary_observed: Bool
        var replicas_identical: Bool
    }

    func curl(_ arguments: [String]) throws -> String { try HACluster.runTool(["/usr/bin/curl", "-sS"] + arguments).output }

    @Test(.enabled(if: hostsAvailable), .timeLimit(.minutes(10)))
    func theDemoLosesNothingReportsTheBytesItResyncedAndKeepsItsConsoles() async throws {
        let directory = NSTemporaryDirectory() + "vmha-demo-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        func namespaces() throws -> Set<String> {
            Set(try HACluster.runTool(["/usr/bin/ip", "netns", "list"]).output.split(separator: "\n").map { String($0.split(separator: " ")[0]) })
        }
        let namespacesBefore = try namespaces()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try builtProduct("vmha"))
        process.arguments = ["demo", "--json", "--console"]
        FileManager.default.createFile(atPath: "\(directory)/out", contents: nil)
        FileManager.default.createFile(atPath: "\(directory)/err", contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: "\(directory)/out"))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: "\(directory)/err"))
        try process.run()
        // On a failure too: Ctrl-C, and wait for the demo's teardown.
        defer { if process.isRunning { kill(process.processIdentifier, SIGINT); process.waitUntilExit() } }
        func progress() -> String { (try? String(contentsOfFile: "\(directory)/err", encoding: .utf8)) ?? "" }

        try await HACluster.waitUntil("the consoles' announcement", timeout: .seconds(120)) { progress().contains("login token: ") }
        let token = try #require(progress().firstMatch(of: /login token: ([0-9a-f]+)/)?.1).description
        let cookies = "\(directory)/cookies"
        // The consoles are announced before vmhad starts (to watch from the first step); they answer
        // once it runs.
        func login() async throws {
            try await HACluster.waitUntil("a login on hostB's console", timeout: .seconds(120)) {
                try curl(["-c", cookies, "-H", "Content-Type: application/json", "--data", #"{"token":"\#(token)"}"#, "http://127.0.0.1:9481/login"]).contains("true")
            }
        }
        try await login()
        #expect(try curl(["http://127.0.0.1:9480/api/state"]).contains("log in first"))

        try await HACluster.waitUntil("the cluster up again after the demo", timeout: .seconds(300)) { progress().contains("the cluster is up again") }
        // The demo stopped both vmhad to compare the replicas and started them again: sessions
        // live in vmhad's memory, so the token logs in again.
        try await login()
        try await HACluster.waitUntil("hostB's console to show vm1 on hostA", timeout: .seconds(60)) {
            let state = try curl(["-b", cookies, "http://127.0.0.1:9481/api/state"])
            return state.contains(#""runsOn":"hostA""#)
        }
        kill(process.processIdentifier, SIGINT)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "vmha demo exited \(process.terminationStatus):\n\(progress().suffix(6000))")
        #expect(progress().contains("everything was torn down"))
        let after = try HACluster.runTool(["/usr/bin/curl", "-sS", "-m", "2", "http://127.0.0.1:9480/"])
        #expect(after.status == 7, "the console's port still answers after the demo (curl exit \(after.status)): \(after.output)")
        #expect(try namespaces() == namespacesBefore, "the demo left network namespaces behind")

        let output = try String(contentsOfFile: "\(directory)/out", encoding: .utf8)
        let last = try #require(output.split(separator: "\n").last, "no JSON line on stdout; stderr:\n\(progress().suffix(4000))")
        let demo = try JSONDecoder().decode(Result.self, from: Data(last.utf8))
        #expect(demo.lost_records == 0)
        #expect(demo.acknowledged_records > 0)
        #expect(demo.written_while_away_bytes > 0, "the guest wrote nothing while A was away: the resync figure proves nothing")
        #expect(demo.resync_bytes >= demo.written_while_away_bytes, "resynced \(demo.resync_bytes) bytes for \(demo.written_while_away_bytes) written")
        #expect(!demo.dual_primary_observed)
        #expect(demo.replicas_identical)
        #expect(demo.failover_seconds > 0)
    }
}
