import Foundation
import Harness
import Testing

/// `vmha demo --json` end to end, as the README's first command runs it (with the build CI has):
/// the figures it prints must be the truth the issue asked for.
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

    @Test(.enabled(if: hostsAvailable), .timeLimit(.minutes(10)))
    func theDemoLosesNothingAndReportsTheBytesItResynced() throws {
        let result = try HACluster.runToolSplit([try builtProduct("vmha"), "demo", "--json"])
        #expect(result.status == 0, "vmha demo exited \(result.status):\n\(result.stderr.suffix(6000))")
        let last = try #require(result.stdout.split(separator: "\n").last, "no JSON line on stdout; stderr:\n\(result.stderr.suffix(4000))")
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
