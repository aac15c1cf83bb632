import Cluster
import Foundation
import Logging

/// The node's events on disk: one JSON object per line in `<state_directory>/events.jsonl`,
/// moved to `events.1.jsonl` once it holds `rotateAfter` lines (so at most twice that is kept).
/// A restarted vmhad reads them back and numbers on, so `vmha events --since` and the support
/// bundle show what happened before a restart or a crash.
///
/// The history is best effort: a line that cannot be written (a full disk) is logged once and
/// the node goes on, its events still in memory; a line that cannot be read back is skipped.
struct EventHistory {
    let path: String
    let rotateAfter: Int
    let logger: Logger
    private var lines = 0
    private var handle: FileHandle?
    private var failing = false

    var rotatedPath: String { Self.rotatedPath(of: path) }

    static func rotatedPath(of path: String) -> String {
        path.hasSuffix(".jsonl") ? String(path.dropLast(6)) + ".1.jsonl" : path + ".1"
    }

    /// The events earlier incarnations left, oldest first, and how many lines were not events.
    static func load(path: String) -> (events: [NodeEvent], skipped: Int) {
        var events: [NodeEvent] = []
        var skipped = 0
        let decoder = JSONDecoder()
        for file in [rotatedPath(of: path), path] {
            guard let data = FileManager.default.contents(atPath: file) else { continue }
            for line in data.split(separator: UInt8(ascii: "\n")) where !line.isEmpty {
                if let event = try? decoder.decode(NodeEvent.self, from: Data(line)) {
                    events.append(event)
                } else {
                    skipped += 1
                }
            }
        }
        // Sequence numbers only grow; a line out of order (a torn rotation) is not trusted.
        var ordered: [NodeEvent] = []
        for event in events where event.sequence > (ordered.last?.sequence ?? 0) { ordered.append(event) }
        return (ordered, skipped + events.count - ordered.count)
    }

    init(path: String, rotateAfter: Int = 10_000, logger: Logger) {
        self.path = path
        self.rotateAfter = max(1, rotateAfter)
        self.logger = logger
        if let data = FileManager.default.contents(atPath: path) {
            lines = data.reduce(0) { $0 + ($1 == UInt8(ascii: "\n") ? 1 : 0) }
        }
    }

    mutating func append(_ event: NodeEvent) {
        guard var line = try? JSONEncoder().encode(event) else { return }
        line.append(UInt8(ascii: "\n"))
        do {
            if lines >= rotateAfter { try rotate() }
            if handle == nil {
                if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
                guard let opened = FileHandle(forWritingAtPath: path) else { throw CocoaError(.fileWriteUnknown) }
                try opened.seekToEnd()
                handle = opened
            }
            try handle!.write(contentsOf: line)
            lines += 1
            if failing {
                failing = false
                logger.notice("event history written again", metadata: ["file": "\(path)"])
            }
        } catch {
            try? handle?.close()
            handle = nil
            if !failing {
                failing = true
                logger.warning("event history: cannot write; events stay in memory only", metadata: ["file": "\(path)", "error": "\(error)"])
            }
        }
    }

    private mutating func rotate() throws {
        try? handle?.close()
        handle = nil
        try? FileManager.default.removeItem(atPath: rotatedPath)
        try FileManager.default.moveItem(atPath: path, toPath: rotatedPath)
        lines = 0
    }

    mutating func close() {
        try? handle?.close()
        handle = nil
    }
}
