import Foundation
import Logging

/// Test-only pauses at named points of the control flow, so that a test can crash a host inside
/// a window that is otherwise milliseconds wide (e.g. after libvirt moved a domain, before the
/// source demoted). Set with `VMHAD_FAILPOINTS="name=milliseconds,…"`; unset, nothing pauses.
enum Failpoint: String {
    /// `migrateLive`: libvirt reported the domain running on the peer; the source has not demoted.
    case liveMigrationMoved = "live-migration-moved"

    static let pauses: [String: Int] = {
        guard let text = ProcessInfo.processInfo.environment["VMHAD_FAILPOINTS"] else { return [:] }
        var pauses: [String: Int] = [:]
        for item in text.split(separator: ",") {
            let parts = item.split(separator: "=", maxSplits: 1)
            if parts.count == 2, let milliseconds = Int(parts[1]) { pauses[String(parts[0])] = milliseconds }
        }
        return pauses
    }()

    func pause(logger: Logger) async {
        guard let milliseconds = Self.pauses[rawValue] else { return }
        logger.warning("failpoint \(rawValue): pausing \(milliseconds) ms")
        try? await Task.sleep(for: .milliseconds(milliseconds))
    }
}
