import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// What one process uses, read from /proc: CPU time (all threads) and memory.
struct ProcessUsage {
    let pid: pid_t

    /// utime + stime of every thread, in seconds.
    func cpuSeconds() throws -> Double {
        let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
        // Fields after the command name (which may contain spaces): state is field 3, utime 14, stime 15.
        guard let close = stat.lastIndex(of: ")") else { throw ProcessUsageError("/proc/\(pid)/stat: \(stat)") }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else {
            throw ProcessUsageError("/proc/\(pid)/stat: \(stat)")
        }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// `Rss` and `Pss` of /proc/PID/smaps_rollup, in bytes. PSS charges shared pages (libraries)
    /// to the processes sharing them in proportion, so sums over many processes are not inflated.
    func memory() throws -> (rss: UInt64, pss: UInt64) {
        let text = try String(contentsOfFile: "/proc/\(pid)/smaps_rollup", encoding: .utf8)
        func kB(_ key: String) -> UInt64? {
            text.split(separator: "\n").first { $0.hasPrefix(key + ":") }
                .flatMap { UInt64($0.dropFirst(key.count + 1).trimmingCharacters(in: .whitespaces).split(separator: " ")[0]) }
        }
        guard let rss = kB("Rss"), let pss = kB("Pss") else { throw ProcessUsageError("/proc/\(pid)/smaps_rollup: \(text)") }
        return (rss * 1024, pss * 1024)
    }

    var command: String {
        (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
    }
}

struct ProcessUsageError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
