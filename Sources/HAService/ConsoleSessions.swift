import Crypto
import Foundation
import Locking

/// The console's logins: one token (from a root-only file) opens a session; each session has a
/// CSRF token that every state-changing request must carry. Failed logins are throttled. Time is
/// passed in, so the rules are tested without waiting.
public final class ConsoleSessions: Sendable {
    public struct Session: Sendable, Equatable {
        public var id: String
        public var csrf: String
        public var expires: Double
    }

    public enum Login: Sendable, Equatable {
        case opened(Session)
        case wrongToken
        /// Too many failures in the last minute: refused without looking at the token.
        case throttled
    }

    static let lifetime: Double = 12 * 3600
    static let failuresPerMinute = 5
    private let tokenDigest: [UInt8]
    private let state = Locked<(sessions: [String: Session], failures: [Double])>(([:], []))

    public init(token: String) {
        tokenDigest = Array(SHA256.hash(data: Data(token.utf8)))
    }

    /// The token's first line from `path`, which must be readable by root only and hold at least
    /// 16 characters.
    public static func readToken(path: String) throws(ConsoleError) -> String {
        var info = stat()
        guard stat(path, &info) == 0 else { throw ConsoleError("console.token_file: cannot read \(path)") }
        guard info.st_mode & 0o077 == 0 else {
            throw ConsoleError("console.token_file: \(path) is readable by others (mode \(String(info.st_mode & 0o777, radix: 8))); chmod 600 it")
        }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw ConsoleError("console.token_file: cannot read \(path)") }
        let token = text.split(separator: "\n").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        guard token.count >= 16 else { throw ConsoleError("console.token_file: \(path) holds \(token.count) characters, a login token needs at least 16") }
        return token
    }

    public func login(token: String, now: Double) -> Login {
        let digest = Array(SHA256.hash(data: Data(token.utf8)))
        return state.withLock { s in
            s.failures.removeAll { $0 < now - 60 }
            guard s.failures.count < Self.failuresPerMinute else { return .throttled }
            // Digests of equal length compared in constant time: the token's length and prefix leak nothing.
            guard zip(digest, tokenDigest).reduce(UInt8(0), { $0 | ($1.0 ^ $1.1) }) == 0 else {
                s.failures.append(now)
                return .wrongToken
            }
            s.sessions = s.sessions.filter { $0.value.expires > now }
            let session = Session(id: Self.random(), csrf: Self.random(), expires: now + Self.lifetime)
            s.sessions[session.id] = session
            return .opened(session)
        }
    }

    public func session(_ id: String?, now: Double) -> Session? {
        guard let id else { return nil }
        return state.withLock { s in s.sessions[id].flatMap { $0.expires > now ? $0 : nil } }
    }

    public func logout(_ id: String) { state.withLock { _ = $0.sessions.removeValue(forKey: id) } }

    static func random() -> String {
        (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
    }
}

public struct ConsoleError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
