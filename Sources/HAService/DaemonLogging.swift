import Foundation
import Locking
import Logging
import SystemCalls

#if canImport(Glibc)
import Glibc
#endif

/// Where vmhad's log goes. Under systemd (stderr is the journal's stream, `JOURNAL_STREAM`):
/// one line per entry with the sd-daemon priority prefix (`<6>`) and no timestamp — journald
/// stamps and ranks it. Otherwise: stderr as before, and with a state directory also
/// `<state_directory>/vmhad.log` (rotated), which the support bundle takes.
public enum DaemonLogging {
    /// Whether stderr is connected to the journal: `JOURNAL_STREAM` names its device and inode
    /// (systemd.exec(5)); a child with a redirected stderr inherits the variable, so it is checked.
    public static var stderrIsJournal: Bool {
        guard let value = ProcessInfo.processInfo.environment["JOURNAL_STREAM"] else { return false }
        let parts = value.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var info = stat()
        guard (try? Syscall.call("fstat") { fstat(2, &info) }) != nil else { return false }
        return UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode
    }

    public static func bootstrap(level: Logger.Level, stateDirectory: String?) {
        let journal = stderrIsJournal
        let file = journal ? nil : stateDirectory.map { LogFile(path: SupportBundle.logPath(stateDirectory: $0)) }
        LoggingSystem.bootstrap { label in
            if journal { return JournalLogHandler(label: label, logLevel: level) }
            var stream = StreamLogHandler.standardError(label: label)
            stream.logLevel = level
            guard let file else { return stream }
            return MultiplexLogHandler([stream, FileLogHandler(label: label, file: file, logLevel: level)])
        }
    }

    /// The syslog priority journald reads from a `<N>` prefix (sd-daemon(3)).
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    static func render(_ metadata: Logger.Metadata) -> String {
        metadata.isEmpty ? "" : " " + metadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
    }
}

/// One line per entry on stderr: `<priority>label: message key=value…`.
public struct JournalLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    let label: String

    public init(label: String, logLevel: Logger.Level) {
        self.label = label
        self.logLevel = logLevel
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        // One entry is one line: a newline inside a message would start a new, unprefixed entry.
        let message = "\(event.message)".replacingOccurrences(of: "\n", with: " ")
        let line = "<\(DaemonLogging.priority(event.level))>\(label): \(message)\(DaemonLogging.render(merged))\n"
        FileHandle.standardError.write(Data(line.utf8))
    }
}

/// An append-only log file, rotated to `.1` past `limit` bytes.
final class LogFile: Sendable {
    let path: String
    let limit: UInt64
    private let state: Locked<(handle: FileHandle?, size: UInt64)>

    init(path: String, limit: UInt64 = 16 << 20) {
        self.path = path
        self.limit = limit
        state = Locked(Self.open(path))
    }

    private static func open(_ path: String) -> (handle: FileHandle?, size: UInt64) {
        // The first start: the node creates the state directory only later.
        try? FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        if !FileManager.default.fileExists(atPath: path) { FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600]) }
        guard let handle = FileHandle(forWritingAtPath: path) else { return (nil, 0) }
        let size = (try? handle.seekToEnd()) ?? 0
        return (handle, size)
    }

    /// Best effort: a log line that cannot be written (a full disk) is dropped, never an error.
    func append(_ line: String) {
        let data = Data(line.utf8)
        state.withLock { s in
            if s.size + UInt64(data.count) > limit {
                try? s.handle?.close()
                _ = try? FileManager.default.removeItem(atPath: path + ".1")
                try? FileManager.default.moveItem(atPath: path, toPath: path + ".1")
                s = Self.open(path)
            }
            guard let handle = s.handle else { return }
            if (try? handle.write(contentsOf: data)) != nil { s.size += UInt64(data.count) }
        }
    }
}

/// StreamLogHandler's line format, to a ``LogFile``.
struct FileLogHandler: LogHandler {
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level
    let label: String
    let file: LogFile

    init(label: String, file: LogFile, logLevel: Logger.Level) {
        self.label = label
        self.file = file
        self.logLevel = logLevel
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        let time = Date().formatted(.iso8601.time(includingFractionalSeconds: true).year().month().day())
        file.append("\(time) \(event.level) \(label):\(DaemonLogging.render(merged)) \(event.message)\n")
    }
}
