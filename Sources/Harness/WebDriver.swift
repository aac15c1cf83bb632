import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A real headless Chromium driven over the W3C WebDriver HTTP API: Debian's `chromedriver` runs
/// in a network namespace (the browser it starts lives there too) and is spoken to with curl in
/// the same namespace. Only what the console test needs.
public final class WebDriver: @unchecked Sendable {
    public let namespace: String
    let port: Int
    let daemon: NamespacedDaemon
    var session = ""

    public static var available: Bool {
        FileManager.default.isExecutableFile(atPath: "/usr/bin/chromedriver") && FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium")
    }

    public init(namespace: String, port: Int = 9515, logPath: String) async throws {
        self.namespace = namespace
        self.port = port
        daemon = try NamespacedDaemon(
            namespace: namespace, executable: "/usr/bin/chromedriver", arguments: ["--port=\(port)", "--allowed-ips=127.0.0.1"], logPath: logPath)
        try await daemon.waitForLog("was started successfully", timeout: .seconds(20))
        let capabilities: [String: Any] = [
            "capabilities": [
                "alwaysMatch": [
                    "browserName": "chrome",
                    "goog:chromeOptions": [
                        "binary": "/usr/bin/chromium",
                        // Root in a container: no sandbox; no GPU; a fixed size for the screenshots.
                        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,900"],
                    ],
                ]
            ]
        ]
        let answer = try call("POST", "/session", capabilities)
        guard let value = answer["value"] as? [String: Any], let id = value["sessionId"] as? String else {
            throw WebDriverError("no session: \(answer)")
        }
        session = id
    }

    /// Ends the session and chromedriver; any browser process it left in the namespace is killed.
    public func quit() async {
        if !session.isEmpty { _ = try? call("DELETE", "/session/\(session)", nil) }
        await daemon.stop()
        let pids = (try? Shell.run(["ip", "netns", "pids", namespace])) ?? ""
        for pid in pids.split(separator: "\n").compactMap({ Int32($0) }) {
            let command = (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? ""
            if command.contains("chromium") || command.contains("chromedriver") { kill(pid, SIGKILL) }
        }
    }

    @discardableResult
    func call(_ method: String, _ path: String, _ body: [String: Any]?) throws -> [String: Any] {
        var arguments = ["/usr/sbin/ip", "netns", "exec", namespace, "/usr/bin/curl", "-sS", "-X", method, "http://127.0.0.1:\(port)\(path)"]
        if let body {
            arguments += ["-H", "Content-Type: application/json", "--data-binary", String(decoding: try JSONSerialization.data(withJSONObject: body), as: UTF8.self)]
        }
        let result = try HACluster.runTool(arguments)
        guard result.status == 0, let object = try? JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any] else {
            throw WebDriverError("\(method) \(path): \(result.output.prefix(500))")
        }
        if let value = object["value"] as? [String: Any], let error = value["error"] as? String {
            throw WebDriverError("\(method) \(path): \(error): \(value["message"] ?? "")")
        }
        return object
    }

    public func navigate(_ url: String) throws { try call("POST", "/session/\(session)/url", ["url": url]) }

    /// The first element matching a CSS selector.
    public func element(_ css: String) throws -> String {
        let answer = try call("POST", "/session/\(session)/element", ["using": "css selector", "value": css])
        guard let value = answer["value"] as? [String: Any], let id = value.values.first as? String else { throw WebDriverError("no element \(css)") }
        return id
    }

    /// Clicks the element `css` names. The console rebuilds its rows when the state changes; if
    /// that happens between finding the element and the click, the element is stale and is found
    /// again once, as a person would click the new row (ConsoleBrowserTests failed so in CI).
    public func click(_ css: String) throws {
        do {
            try call("POST", "/session/\(session)/element/\(try element(css))/click", [:])
        } catch let error as WebDriverError where error.description.contains("stale element reference") {
            try call("POST", "/session/\(session)/element/\(try element(css))/click", [:])
        }
    }

    public func type(_ css: String, _ text: String) throws {
        try call("POST", "/session/\(session)/element/\(try element(css))/value", ["text": text])
    }

    /// Runs a script in the page; its return value.
    public func script(_ source: String) throws -> Any? {
        (try call("POST", "/session/\(session)/execute/sync", ["script": source, "args": []]))["value"]
    }

    /// The text of the first element matching `css`, or nil if there is none.
    public func text(_ css: String) throws -> String? {
        try script("const e = document.querySelector(\(Self.quoted(css))); return e ? e.textContent : null;") as? String
    }

    /// A PNG of the viewport.
    public func screenshot(to path: String) throws {
        let answer = try call("GET", "/session/\(session)/screenshot", nil)
        guard let base64 = answer["value"] as? String, let data = Data(base64Encoded: base64) else { throw WebDriverError("no screenshot") }
        try data.write(to: URL(fileURLWithPath: path))
    }

    static func quoted(_ text: String) -> String {
        String(decoding: try! JSONSerialization.data(withJSONObject: [text]), as: UTF8.self).dropFirst().dropLast().description
    }
}

public struct WebDriverError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
