import Foundation
import Harness
import Logging
import Testing

/// The web console in a real headless Chromium (Debian's chromium + chromedriver, W3C WebDriver)
/// against a real cluster: the browser on the witness host C shows hostB's console; it logs in,
/// sees vm1 run on hostA, watches — without reloading — hostA die and vm1 come up on hostB,
/// then fails it back with the page's button and runs a resync from the page to its end.
/// Screenshots of each step: /var/tmp/vmha-console-screenshots/ (docs/console.md uses them).
@Suite("Web console in a browser", .serialized)
struct ConsoleBrowserTests {
    let logger = Logger(label: "vmha.tests.ha.console")
    static let consolePort = 9480
    static let screenshots = "/var/tmp/vmha-console-screenshots"

    @Test(.enabled(if: hostsAvailable && WebDriver.available), .timeLimit(.minutes(8)))
    func aFailoverAndAFailbackSeenAndDrivenFromThePage() async throws {
        try await HACluster.test(logger: logger, make: {
            try HACluster(
                cluster: $0, guest: $1, vmhad: $2, vmha: $3, consolePort: Self.consolePort,
                hostTOML: [1: "[[hosts.checks]]\nkind = \"script\"\nname = \"storage\"\ncommand = \"true\"\ninterval_ms = 500"])
        }) { ha, watch in
            try await ha.startAndWaitUntilRedundant()
            try? FileManager.default.removeItem(atPath: Self.screenshots)
            try FileManager.default.createDirectory(atPath: Self.screenshots, withIntermediateDirectories: true)
            let c = ha.cluster.hosts[2]
            let browser = try await WebDriver(namespace: c.netns, logPath: "\(ha.scratch)/chromedriver.log")
            do {
                try await scenario(ha, watch: watch, browser: browser)
                await browser.quit()
            } catch {
                try? browser.screenshot(to: "\(Self.screenshots)/failure.png")
                await browser.quit()
                throw HAClusterError("\(error); screenshots in \(Self.screenshots)")
            }
        }
    }

    func scenario(_ ha: HACluster, watch: DualRunWatch, browser: WebDriver) async throws {
        var step = 0
        func shot(_ name: String) throws {
            step += 1
            try browser.screenshot(to: "\(Self.screenshots)/\(step)-\(name).png")
        }
        /// Waits for the page (never reloaded) to show what `condition` reads from it.
        func waitForPage(_ what: String, timeout: Duration, _ condition: () throws -> Bool) async throws {
            try await HACluster.waitUntil("the page to show \(what)", timeout: timeout, condition)
        }
        let row = "tr[data-vm=\"vm1\"]"
        let consoleB = "http://\(ha.cluster.address(of: 1, toward: 2)):\(Self.consolePort)/"

        // Log in to hostB's console: a wrong token first.
        try browser.navigate(consoleB)
        try browser.type("#token", "wrong-token-wrong-token")
        try browser.click("#login")
        try await waitForPage("the refusal", timeout: .seconds(10)) { try browser.text("#login-error") == "wrong token" }
        try browser.navigate(consoleB)
        try browser.type("#token", ha.consoleToken)
        try browser.click("#login")
        try await waitForPage("vm1 running on hostA, its disk connected", timeout: .seconds(20)) {
            try browser.text("\(row) td.runs-on") == "hostA" && (try browser.text("\(row) td.peer"))?.hasPrefix("PRIM/") == true
                && (try browser.text("\(row) td.state")) == "SECOND/upToDate"
        }
        try await waitForPage("the live stream connected", timeout: .seconds(10)) { try browser.text("#live") == "live" }
        try await waitForPage("hostB's host check", timeout: .seconds(10)) {
            try browser.text("#host-hostB div[data-host-check=\"storage\"]") == "host check storage: healthy (script exit 0)"
        }
        try browser.click("nav button[data-tab=\"vms-tab\"]")
        try shot("vm1-on-hostA")
        // The page is not reloaded from here on: a marker in its window object would be lost.
        _ = try browser.script("window.vmhaMarker = 42; return null;")

        // hostA dies hard.
        ha.daemons[0]?.kill()
        try ha.hostA.crash()
        await watch.hostCrashed(0)
        let killed = ContinuousClock.now
        try await waitForPage("vm1 running on hostB", timeout: .seconds(40)) {
            try browser.text("\(row) td.runs-on") == "hostB" && (try browser.text("\(row) td.state"))?.hasPrefix("ALONE/") == true
        }
        let shown = killed.duration(to: .now)
        try shot("vm1-on-hostB-after-failover")
        #expect(try browser.script("return window.vmhaMarker;") as? Int == 42, "the page was reloaded")
        #expect(try browser.text("#peer-state") == "peer lost")
        // Detection (3 s) plus the takeover; the page follows within a second or two of the event.
        #expect(shown < .seconds(15), "the page showed the failover \(shown) after the kill")

        // hostA returns; the page shows its replica resynced (the resync's events on the timeline).
        try ha.hostA.startLibvirtdInExistingNamespaces()
        try ha.hostA.linksUp()
        try ha.startDaemon(0)
        try await waitForPage("hostA's replica UpToDate again", timeout: .seconds(90)) {
            let peer = try browser.text("\(row) td.peer"), link = try browser.text("\(row) .disks span.link")
            return peer == "SECOND/upToDate" && link?.contains("connected") == true
        }
        try shot("hostA-back-resynced")

        // Fail back from the page: the button, the confirmation, the answer.
        try browser.click("\(row) button.migrate[data-to=\"hostA\"]")
        #expect(try browser.text("#confirm-text")?.contains("Switch vm1 over to hostA") == true)
        try shot("confirm-failback")
        try browser.click("#confirm-ok")
        try await waitForPage("vm1 arrived on hostA", timeout: .seconds(120)) {
            try browser.text("\(row) td.runs-on") == "hostA" && (try browser.text("\(row) td.state"))?.hasPrefix("SECOND/") == true
        }
        #expect(try browser.text("#action-result")?.isEmpty == false)
        try shot("vm1-back-on-hostA")

        // A full resync from the page (hostB's console sends it; hostA runs vm1, so it is refused
        // with vmhad's reason) and the resync started from hostA's own console runs to its end.
        try browser.click("\(row) button.resync")
        try browser.click("#confirm-ok")
        try await waitForPage("the refusal's one-line reason", timeout: .seconds(20)) { try browser.text("#action-result")?.hasPrefix("refused: ") == true }
        try shot("resync-refused-on-hostB")
        let consoleA = "http://\(ha.cluster.address(of: 0, toward: 2)):\(Self.consolePort)/"
        try browser.navigate(consoleA)
        try browser.type("#token", ha.consoleToken)
        try browser.click("#login")
        try await waitForPage("vm1 PRIM on hostA", timeout: .seconds(20)) { try browser.text("\(row) td.state")?.hasPrefix("PRIM/") == true }
        try browser.click("nav button[data-tab=\"vms-tab\"]")
        _ = try browser.script("document.querySelector('\(row) select').value = 'full'; return null;")
        try browser.click("\(row) button.resync")
        #expect(try browser.text("#confirm-text")?.contains("full resync") == true)
        try browser.click("#confirm-ok")
        try await waitForPage("the resync's end on the timeline", timeout: .seconds(60)) {
            (try browser.script("return document.querySelectorAll('#events li[data-kind=\"resyncFinished\"]').length;") as? Int ?? 0) > 0
        }
        try browser.click("nav button[data-tab=\"events-tab\"]")
        try shot("events-resync-finished")
        // vm1's detail: its disks and the chart of the guest's write latency as the guest writes.
        try browser.click("nav button[data-tab=\"vms-tab\"]")
        try browser.click("\(row) td a")
        try await waitForPage("write latency points on vm1's chart", timeout: .seconds(20)) {
            (Int(try browser.script("return document.getElementById('latency-chart').dataset.points || '0';") as? String ?? "0") ?? 0) >= 2
        }
        #expect(try browser.text("#detail-disks")?.contains("image ") == true)
        try shot("vm1-detail")
        // The console never shows the cluster key.
        let key = try Data(contentsOf: URL(fileURLWithPath: ha.key))
        let hex = key.map { String(format: "%02x", $0) }.joined()
        let html = try browser.script("return document.documentElement.outerHTML;") as? String ?? ""
        #expect(!html.contains(hex) && !html.contains(key.base64EncodedString()))
    }
}
