import Foundation

/// The test guest's serial console file (written by virtlogd, append='on').
public struct SerialLog: Sendable {
    public let path: String

    public init(path: String) { self.path = path }

    public func lines() -> [String] {
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        return String(decoding: data, as: UTF8.self)
            .split(whereSeparator: \.isNewline).map(String.init)  // "\r\n" is one Character
    }

    /// The highest `ACK <n>` so far. `tag`: another disk's writer of a multi-disk guest
    /// (`"2"` for vdb's `ACK2 <n>`, ``GuestInit``); the same for the functions below.
    public func lastACK(tag: String = "") -> Int? {
        let prefix = "ACK\(tag) "
        return lines().compactMap { $0.hasPrefix(prefix) ? Int($0.dropFirst(prefix.count)) : nil }.max()
    }

    /// Every `VERIFY ok= bad= last=` summary, in order (one per boot of the records workload).
    public func verifySummaries(tag: String = "") -> [(ok: Int, bad: Int, last: Int)] {
        lines().compactMap { line in
            guard line.hasPrefix("VERIFY\(tag) ok=") else { return nil }
            var values: [String: Int] = [:]
            for field in line.dropFirst("VERIFY\(tag) ".count).split(separator: " ") {
                let kv = field.split(separator: "=")
                if kv.count == 2 { values[String(kv[0])] = Int(kv[1]) }
            }
            guard let ok = values["ok"], let bad = values["bad"], let last = values["last"] else { return nil }
            return (ok, bad, last)
        }
    }

    /// How many times the guest booted (`VMHA-GUEST-UP` lines).
    public func bootCount() -> Int {
        lines().filter { $0.hasPrefix("VMHA-GUEST-UP") }.count
    }

    /// The latest boot's `VERIFY` summary, nil until it printed one. A boot shut down while
    /// verifying prints none, so counting summaries does not count boots.
    public func latestBootVerify(tag: String = "") -> (ok: Int, bad: Int, last: Int)? {
        let all = lines()
        guard let boot = all.lastIndex(where: { $0.hasPrefix("VMHA-GUEST-UP") }) else { return nil }
        guard all[boot...].contains(where: { $0.hasPrefix("VERIFY\(tag) ok=") }) else { return nil }
        return SerialLog(path: path).verifySummaries(tag: tag).last
    }

    /// Waits until the guest has booted `boot` times in all and that boot printed its `VERIFY`;
    /// returns the summary.
    public func waitForVerify(ofBoot boot: Int, timeout: Duration = .seconds(90)) async throws -> (ok: Int, bad: Int, last: Int) {
        var summary: (ok: Int, bad: Int, last: Int)?
        try await waitFor("boot \(boot) verified", timeout: timeout) { _ in
            summary = bootCount() == boot ? latestBootVerify() : nil
            return summary != nil
        }
        return summary!
    }

    public struct Timeout: Error, CustomStringConvertible {
        public var what: String
        public var tail: [String]
        public var description: String { "timed out waiting for \(what); serial log tail:\n" + tail.joined(separator: "\n") }
    }

    /// Polls until `predicate` holds for the log's lines.
    public func waitFor(
        _ what: String, timeout: Duration = .seconds(30), _ predicate: ([String]) -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while true {
            if predicate(lines()) { return }
            if ContinuousClock.now > deadline { throw Timeout(what: what, tail: Array(lines().suffix(15))) }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    public func waitForLine(containing text: String, timeout: Duration = .seconds(30)) async throws {
        try await waitFor("'\(text)'", timeout: timeout) { $0.contains { $0.contains(text) } }
    }

    /// Waits until an ACK above `n` appears.
    public func waitForACK(after n: Int, tag: String = "", timeout: Duration = .seconds(30)) async throws {
        try await waitFor("ACK\(tag) > \(n)", timeout: timeout) { _ in (lastACK(tag: tag) ?? 0) > n }
    }
}
