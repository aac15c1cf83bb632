import Cluster
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOSSL
import ServiceLifecycle

/// The web console (docs/console.md): a page with its script and style embedded in the binary,
/// a JSON API on the node's control requests, and the node's events as server-sent events. Every
/// API request needs a session cookie (401 without); every state-changing one also the session's
/// CSRF token in `X-CSRF-Token` (403 without).
public struct ConsoleService: Service {
    let application: Application<RouterResponder<BasicRequestContext>>

    /// What the console asks of the node; in vmhad, `ClusterNode.handle`.
    public typealias Handler = @Sendable (ControlRequest) async -> ControlResponse

    /// Commands the console may send (read-only ones are asked by their own routes).
    static let actions: Set<String> = ["migrate", "resync", "place"]

    public init(
        console: ClusterConfiguration.Console, token: String, configurationText: @escaping @Sendable () -> String, handle: @escaping Handler,
        logger: Logger, listening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) throws {
        let sessions = ConsoleSessions(token: token)
        let secure = console.tlsCertificate != nil
        let router = Router()
        @Sendable func now() -> Double { Date().timeIntervalSince1970 }
        @Sendable func session(_ request: Request) -> ConsoleSessions.Session? { sessions.session(request.cookies["vmha_session"]?.value, now: now()) }
        @Sendable func unauthorized() -> Response { Self.json(.unauthorized, ["error": "log in first"]) }

        router.get("/") { request, _ -> Response in
            guard let s = session(request) else { return Self.page(ConsoleAssets.loginPage) }
            return Self.page(ConsoleAssets.appPage(csrf: s.csrf))
        }
        router.get("/app.js") { _, _ in Self.asset(ConsoleAssets.script, type: "text/javascript; charset=utf-8") }
        router.get("/app.css") { _, _ in Self.asset(ConsoleAssets.style, type: "text/css; charset=utf-8") }
        router.post("/login") { request, _ -> Response in
            struct Form: Decodable { var token: String }
            guard let body = try? await request.body.collect(upTo: 4096), let form = try? JSONDecoder().decode(Form.self, from: Data(buffer: body)) else {
                return Self.json(.badRequest, ["error": "expected {\"token\": \"…\"}"])
            }
            switch sessions.login(token: form.token, now: now()) {
            case .opened(let s):
                logger.notice("console login")
                var response = Self.json(.ok, ["ok": "true"])
                response.setCookie(Cookie(name: "vmha_session", value: s.id, maxAge: Int(ConsoleSessions.lifetime), path: "/", secure: secure, httpOnly: true, sameSite: .strict))
                return response
            case .wrongToken:
                logger.warning("console login refused: wrong token")
                return Self.json(.unauthorized, ["error": "wrong token"])
            case .throttled:
                return Self.json(.tooManyRequests, ["error": "too many failed logins; wait a minute"])
            }
        }
        router.post("/logout") { request, _ -> Response in
            guard let s = session(request) else { return unauthorized() }
            guard request.headers[.init("X-CSRF-Token")!] == s.csrf else { return Self.json(.forbidden, ["error": "missing or wrong CSRF token"]) }
            sessions.logout(s.id)
            return Self.json(.ok, ["ok": "true"])
        }
        router.get("/api/state") { request, _ -> Response in
            guard session(request) != nil else { return unauthorized() }
            return Self.json(.ok, await handle(ControlRequest(command: "status")))
        }
        router.get("/api/config") { request, _ -> Response in
            guard session(request) != nil else { return unauthorized() }
            return Self.asset(SupportBundle.redact(configuration: configurationText()), type: "text/plain; charset=utf-8")
        }
        router.post("/api/action") { request, _ -> Response in
            guard let s = session(request) else { return unauthorized() }
            guard request.headers[.init("X-CSRF-Token")!] == s.csrf else { return Self.json(.forbidden, ["error": "missing or wrong CSRF token"]) }
            guard let body = try? await request.body.collect(upTo: 65536), let action = try? JSONDecoder().decode(ControlRequest.self, from: Data(buffer: body)),
                Self.actions.contains(action.command)
            else { return Self.json(.badRequest, ["error": "expected a migrate, resync or place request"]) }
            logger.notice("console action", metadata: ["command": "\(action.command)", "vm": "\(action.vm ?? "-")"])
            return Self.json(.ok, await handle(action))
        }
        router.get("/api/events") { request, _ -> Response in
            guard session(request) != nil else { return unauthorized() }
            // EventSource resumes with the last id it saw; a new reader starts with the current state.
            let resume = request.headers[.init("Last-Event-ID")!].flatMap(UInt64.init)
            return Response(
                status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-store"],
                body: ResponseBody { writer in
                    var since = resume
                    let encoder = JSONEncoder()
                    encoder.outputFormatting = [.sortedKeys]
                    while !Task.isCancelled {
                        let answer = await handle(ControlRequest(command: "events", since: since, now: since == nil, waitSeconds: 15))
                        guard let report = answer.events else { break }
                        var text = ""
                        for event in report.events {
                            guard let data = try? encoder.encode(event) else { continue }
                            text += "id: \(event.sequence)\ndata: \(String(decoding: data, as: UTF8.self))\n\n"
                        }
                        // A comment when nothing happened: a vanished reader fails this write.
                        if text.isEmpty { text = ": idle\n\n" }
                        try await writer.write(ByteBuffer(string: text))
                        since = report.lastSequence
                    }
                    try await writer.finish(nil)
                })
        }

        var server = HTTPServerBuilder.http1()
        if let certificate = console.tlsCertificate, let key = console.tlsKey {
            let tls = TLSConfiguration.makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) },
                privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
            server = try .tls(.http1(), tlsConfiguration: tls)
        }
        let scheme = secure ? "https" : "http"
        application = Application(
            router: router, server: server,
            configuration: .init(address: .hostname(console.listen.host, port: console.listen.port), serverName: "vmhad"),
            onServerRunning: { channel in
                let bound = channel.localAddress?.port ?? console.listen.port
                logger.info("console listening", metadata: ["address": "\(scheme)://\(console.listen.host):\(bound)/"])
                await listening(bound)
            },
            logger: logger)
    }

    public func run() async throws {
        try await application.runService(gracefulShutdownSignals: [])
    }

    /// Headers every answer carries: no framing, no sniffing, scripts only from this origin.
    static let securityHeaders: HTTPFields = [
        .init("Content-Security-Policy")!: "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        .init("X-Frame-Options")!: "DENY", .init("X-Content-Type-Options")!: "nosniff", .init("Referrer-Policy")!: "no-referrer",
    ]

    static func page(_ html: String) -> Response {
        var headers = securityHeaders
        headers[.contentType] = "text/html; charset=utf-8"
        headers[.cacheControl] = "no-store"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: html)))
    }

    static func asset(_ text: String, type: String) -> Response {
        var headers = securityHeaders
        headers[.contentType] = type
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    static func json<T: Encodable>(_ status: HTTPResponse.Status, _ value: T) -> Response {
        var headers = securityHeaders
        headers[.contentType] = "application/json"
        headers[.cacheControl] = "no-store"
        let data = (try? JSONEncoder().encode(value)) ?? Data("{}".utf8)
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}
