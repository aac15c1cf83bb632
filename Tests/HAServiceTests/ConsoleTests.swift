import Cluster
import Foundation
import Harness
import Logging
import Testing

@testable import HAService

/// The console's HTTP surface with a real client (curl): no anonymous access, CSRF on every
/// state-changing request, the session cookie's attributes, the event stream, TLS — and the
/// cluster key never served. The node behind it is a recorder of the requests it is asked.
@Suite("Web console over HTTP", .serialized)
struct ConsoleTests {
    actor Recorder {
        var requests: [ControlRequest] = []
        func record(_ r: ControlRequest) { requests.append(r) }
    }

    static let token = "console-token-\(UUID().uuidString)"
    static let secretKey = "KEY-\(UUID().uuidString)-KEY"

    struct Running {
        var port: Int
        var task: Task<Void, any Error>
        var recorder: Recorder
        var scheme: String
    }

    func start(tls: (certificate: String, key: String)? = nil) async throws -> Running {
        let recorder = Recorder()
        let ports = AsyncStream<Int>.makeStream()
        let console = ClusterConfiguration.Console(
            listen: EndpointAddress(host: "127.0.0.1", port: 0), tokenFile: "/unused", tlsCertificate: tls?.certificate, tlsKey: tls?.key)
        let config = """
            [cluster]
            name = "c"
            key_file = "/etc/vmha/cluster.key"
            [console]
            session_secret = "\(Self.secretKey)"
            """
        let service = try ConsoleService(
            console: console, token: Self.token, configurationText: { config },
            handle: { request in
                await recorder.record(request)
                switch request.command {
                case "status":
                    return ControlResponse(ok: true, status: ClusterStatusReport(
                        host: "hostA", peer: "hostB", peerState: "alive", networks: ["up"], witness: nil, lease: "granted", fenced: false, vms: [], events: []))
                case "events":
                    if request.since == nil {
                        let event = NodeEvent(sequence: 7, incarnation: 1, time: 1, kind: .peer(state: .alive))
                        return ControlResponse(ok: true, events: EventsReport(host: "hostA", incarnation: 1, lastSequence: 7, missed: false, events: [event]))
                    }
                    try? await Task.sleep(for: .milliseconds(200))
                    return ControlResponse(ok: true, events: EventsReport(host: "hostA", incarnation: 1, lastSequence: request.since ?? 0, missed: false, events: []))
                default:
                    return ControlResponse(ok: true, message: "did \(request.command)")
                }
            },
            logger: Logger(label: "test"), listening: { ports.continuation.yield($0) })
        let task = Task { try await service.run() }
        var iterator = ports.stream.makeAsyncIterator()
        let port = try #require(await iterator.next())
        return Running(port: port, task: task, recorder: recorder, scheme: tls == nil ? "http" : "https")
    }

    /// curl's status code, headers and body.
    func curl(_ running: Running, _ path: String, method: String = "GET", cookie: String? = nil, csrf: String? = nil, body: String? = nil, extra: [String] = [])
        async throws -> (status: Int, headers: String, body: String)
    {
        let headersFile = NSTemporaryDirectory() + "vmha-curl-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: headersFile) }
        var arguments = ["/usr/bin/curl", "-sS", "-k", "-X", method, "-D", headersFile, "-o", "-", "-w", "\n%{http_code}"] + extra
        if let cookie { arguments += ["-H", "Cookie: vmha_session=\(cookie)"] }
        if let csrf { arguments += ["-H", "X-CSRF-Token: \(csrf)"] }
        if let body { arguments += ["-H", "Content-Type: application/json", "--data", body] }
        arguments.append("\(running.scheme)://127.0.0.1:\(running.port)\(path)")
        let result = try await HACluster.runToolOffPool(arguments)
        var lines = result.output.split(separator: "\n", omittingEmptySubsequences: false)
        let status = Int(lines.popLast() ?? "") ?? 0
        return (status, (try? String(contentsOfFile: headersFile, encoding: .utf8)) ?? "", lines.joined(separator: "\n"))
    }

    func login(_ running: Running) async throws -> (cookie: String, headers: String) {
        let answer = try await curl(running, "/login", method: "POST", body: #"{"token":"\#(Self.token)"}"#)
        #expect(answer.status == 200, "\(answer)")
        let line = try #require(answer.headers.split(separator: "\r\n").first { $0.lowercased().hasPrefix("set-cookie: vmha_session=") })
        let value = line.dropFirst("set-cookie: vmha_session=".count).prefix { $0 != ";" }
        return (String(value), String(line))
    }

    @Test(.timeLimit(.minutes(1))) func noAnonymousAccessCSRFOnEveryChangeAndNoKey() async throws {
        let running = try await start()
        defer { running.task.cancel() }
        // Anonymous: the login page, nothing else.
        #expect(try await curl(running, "/").body.contains("id=\"login-form\""))
        #expect(try await curl(running, "/api/state").status == 401)
        #expect(try await curl(running, "/api/events").status == 401)
        #expect(try await curl(running, "/api/config").status == 401)
        #expect(try await curl(running, "/api/action", method: "POST", body: #"{"command":"migrate","vm":"vm1","to":"hostB"}"#).status == 401)
        #expect(try await curl(running, "/api/state", cookie: "forged").status == 401)
        // A wrong token opens no session.
        let wrong = try await curl(running, "/login", method: "POST", body: #"{"token":"not-the-token-at-all"}"#)
        #expect(wrong.status == 401)
        #expect(!wrong.headers.lowercased().contains("set-cookie"))
        #expect(try await curl(running, "/login", method: "POST", body: "garbage").status == 400)

        let (cookie, setCookie) = try await login(running)
        #expect(setCookie.contains("HttpOnly") && setCookie.contains("SameSite=Strict") && setCookie.contains("Path=/"))
        #expect(!setCookie.contains("Secure"), "no TLS here")
        let page = try await curl(running, "/", cookie: cookie)
        #expect(page.headers.contains("Content-Security-Policy: default-src 'self'"))
        let csrf = try #require(page.body.firstMatch(of: /name="csrf" content="([0-9a-f]{64})"/)?.1).description
        #expect(try await curl(running, "/app.js").body.contains("EventSource"))
        let state = try await curl(running, "/api/state", cookie: cookie)
        #expect(state.status == 200)
        #expect(try JSONDecoder().decode(ControlResponse.self, from: Data(state.body.utf8)).status?.host == "hostA")

        // Changes: without or with a wrong CSRF token 403, and the node is not asked.
        let migrate = #"{"command":"migrate","vm":"vm1","to":"hostB"}"#
        #expect(try await curl(running, "/api/action", method: "POST", cookie: cookie, body: migrate).status == 403)
        #expect(try await curl(running, "/api/action", method: "POST", cookie: cookie, csrf: String(repeating: "0", count: 64), body: migrate).status == 403)
        #expect(try await curl(running, "/logout", method: "POST", cookie: cookie).status == 403)
        #expect(await running.recorder.requests.filter { $0.command == "migrate" }.isEmpty)
        // Only the console's actions, and with the token they reach the node.
        #expect(try await curl(running, "/api/action", method: "POST", cookie: cookie, csrf: csrf, body: #"{"command":"remove","vm":"vm1"}"#).status == 400)
        let done = try await curl(running, "/api/action", method: "POST", cookie: cookie, csrf: csrf, body: migrate)
        #expect(done.status == 200)
        #expect(done.body.contains("did migrate"))
        #expect(await running.recorder.requests.contains { $0.command == "migrate" && $0.vm == "vm1" && $0.to == "hostB" })

        // The configuration, redacted.
        let config = try await curl(running, "/api/config", cookie: cookie)
        #expect(config.body.contains("key_file"))
        #expect(!config.body.contains(Self.secretKey))

        // Events: server-sent, the current state first, with ids to resume from.
        let events = try await curl(running, "/api/events", cookie: cookie, extra: ["-N", "--max-time", "1"])
        #expect(events.headers.contains("text/event-stream"))
        #expect(events.body.contains("id: 7\ndata: {"), "\(events.body)")

        // Logged out: the session is gone.
        #expect(try await curl(running, "/logout", method: "POST", cookie: cookie, csrf: csrf).status == 200)
        #expect(try await curl(running, "/api/state", cookie: cookie).status == 401)

        // Brute force: after 5 wrong tokens in a minute even the right one waits.
        for _ in 0..<5 { _ = try await curl(running, "/login", method: "POST", body: #"{"token":"guess"}"#) }
        #expect(try await curl(running, "/login", method: "POST", body: #"{"token":"\#(Self.token)"}"#).status == 429)
    }

    @Test(.timeLimit(.minutes(1))) func overTLSTheCookieIsSecure() async throws {
        let directory = NSTemporaryDirectory() + "vmha-tls-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        _ = try HACluster.runTool([
            "/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
            "-keyout", "\(directory)/key.pem", "-out", "\(directory)/cert.pem",
        ])
        let running = try await start(tls: ("\(directory)/cert.pem", "\(directory)/key.pem"))
        defer { running.task.cancel() }
        #expect(try await curl(running, "/api/state").status == 401)
        let (_, setCookie) = try await login(running)
        #expect(setCookie.contains("Secure") && setCookie.contains("HttpOnly"))
        // Plain HTTP to the TLS port gets nothing.
        let plain = try HACluster.runTool(["/usr/bin/curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(running.port)/api/state"])
        #expect(!plain.output.hasSuffix("401"))
    }

    @Test func sessionsExpireAndTokensFileMustBeRootOnly() throws {
        let sessions = ConsoleSessions(token: "0123456789abcdef-token")
        guard case .opened(let s) = sessions.login(token: "0123456789abcdef-token", now: 1000) else { Issue.record("no session"); return }
        #expect(sessions.session(s.id, now: 1000 + 3600) == s)
        #expect(sessions.session(s.id, now: 1000 + ConsoleSessions.lifetime + 1) == nil)
        #expect(sessions.session(nil, now: 1000) == nil)
        // Failures expire after a minute.
        for _ in 0..<5 { #expect(sessions.login(token: "x", now: 2000) == .wrongToken) }
        #expect(sessions.login(token: "0123456789abcdef-token", now: 2030) == .throttled)
        if case .opened = sessions.login(token: "0123456789abcdef-token", now: 2061) {} else { Issue.record("still throttled after a minute") }

        let path = NSTemporaryDirectory() + "vmha-token-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try "a-long-enough-token-1234\n".write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o644)
        #expect(throws: ConsoleError.self) { _ = try ConsoleSessions.readToken(path: path) }
        chmod(path, 0o600)
        #expect(try ConsoleSessions.readToken(path: path) == "a-long-enough-token-1234")
        try "short\n".write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o600)
        #expect(throws: ConsoleError.self) { _ = try ConsoleSessions.readToken(path: path) }
        #expect(throws: ConsoleError.self) { _ = try ConsoleSessions.readToken(path: path + ".missing") }
    }
}
