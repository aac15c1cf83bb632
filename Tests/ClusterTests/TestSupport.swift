import Foundation
import Testing

/// Repository paths, found from this file's location so tests work from any working directory.
enum Repository {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static func read(_ relativePath: String) throws -> String {
        try String(contentsOf: root.appendingPathComponent(relativePath), encoding: .utf8)
    }
}

extension Repository {
    /// The text between `<!-- BEGIN GENERATED name -->` and `<!-- END GENERATED name -->` in `file`
    /// must be `generated` (a table docs show, made from code). `VMHA_UPDATE_DOCS=1` rewrites it.
    static func expectGeneratedSection(_ name: String, in file: String, toBe generated: String, rerun filter: String) throws {
        let begin = "<!-- BEGIN GENERATED \(name) -->\n", end = "<!-- END GENERATED \(name) -->"
        let path = root.appendingPathComponent(file)
        var doc = try String(contentsOf: path, encoding: .utf8)
        let start = try #require(doc.range(of: begin))
        let stop = try #require(doc.range(of: end, range: start.upperBound..<doc.endIndex))
        if ProcessInfo.processInfo.environment["VMHA_UPDATE_DOCS"] == "1" {
            doc.replaceSubrange(start.upperBound..<stop.lowerBound, with: generated + "\n")
            try doc.write(to: path, atomically: true, encoding: .utf8)
            return
        }
        #expect(String(doc[start.upperBound..<stop.lowerBound]) == generated + "\n",
                "\(file) is stale: run VMHA_UPDATE_DOCS=1 swift test --filter \(filter)")
    }
}
