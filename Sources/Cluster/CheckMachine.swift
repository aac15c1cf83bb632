/// How one health check of a VM (a guest-agent ping, a TCP connect, a script; issue 15) is judged:
/// a pure function from (status, event) to (status, actions), like ``ModuleStateMachine``. Its
/// owner runs the check, feeds each result in as an event, and carries out the actions; time comes
/// in with the events (no clock is read here). docs/ha.md, "Checks", holds the table, generated
/// from this code and checked by a test.
///
/// The rules:
/// - a booting guest's failures do not count until its start-up grace ends;
/// - `failuresBeforeAction` failures in a row make the check failed, and recovery is asked for
///   once per failure (the restart or move that follows starts the check again);
/// - a check whose verdict changed `flapChanges` times within `flapWindow` is flapping: reported
///   and not acted on while it keeps changing; after a whole window without a change its results
///   count again (a service that stays dead is then recovered, one that stays up is healthy).
public enum CheckMachine {
    public static func transition(
        from status: CheckStatus, on event: CheckEvent, thresholds: CheckThresholds
    ) -> (status: CheckStatus, actions: [CheckAction]) {
        var next = status
        switch event {
        case .domainStarted(let at):
            // A restart or a move starts the check over; its flapping history stays: a check that
            // fails again after each restart is exactly what must not be acted on forever.
            next.consecutiveFailures = 0
            next.graceEnds = at + thresholds.startupGrace
            next.verdictChanges.removeAll { $0 + thresholds.flapWindow <= at }
            if next.health != .flapping || next.verdictChanges.isEmpty { next.health = .starting }
            return (next, [])

        case .passed(let at):
            next.verdictChanges.removeAll { $0 + thresholds.flapWindow <= at }
            next.consecutiveFailures = 0
            switch status.health {
            case .healthy:
                return (next, [])
            case .starting, .failing:
                next.health = .healthy
                return (next, [.report(.healthy, "passed")])
            case .failed:
                next.health = .healthy
                next.verdictChanges.append(at)
                return (next, [.report(.healthy, "passed again")])
            case .flapping:
                // Still flipping (a failed streak ends) keeps it flapping; a quiet window ends it.
                if status.consecutiveFailures >= thresholds.failuresBeforeAction { next.verdictChanges.append(at) }
                guard next.verdictChanges.isEmpty else { return (next, []) }
                next.health = .healthy
                return (next, [.report(.healthy, "stable for \(thresholds.flapWindow): no longer flapping")])
            }

        case .failed(let at, let reason):
            next.verdictChanges.removeAll { $0 + thresholds.flapWindow <= at }
            switch status.health {
            case .starting where at < (status.graceEnds ?? at):
                return (next, [])  // the guest is still booting: its service may not be up yet
            case .failed:
                return (next, [])  // recovery was asked for; it starts the check over
            case .flapping where !next.verdictChanges.isEmpty:
                next.consecutiveFailures += 1
                if next.consecutiveFailures == thresholds.failuresBeforeAction { next.verdictChanges.append(at) }
                return (next, [])
            case .starting, .healthy, .failing, .flapping:
                next.consecutiveFailures += 1
                guard next.consecutiveFailures >= thresholds.failuresBeforeAction else {
                    next.health = .failing
                    return (next, status.health == .failing ? [] : [.report(.failing, reason)])
                }
                next.verdictChanges.append(at)
                if next.verdictChanges.count >= thresholds.flapChanges {
                    next.health = .flapping
                    return (next, [.report(.flapping, "\(next.verdictChanges.count) changes within \(thresholds.flapWindow); not acted on: \(reason)")])
                }
                next.health = .failed
                return (next, [.report(.failed, reason), .recover(reason)])
            }
        }
    }

    /// Representative statuses (at the table's instant, 100 s) for the documented table.
    static func representatives(_ t: CheckThresholds) -> [(String, CheckStatus)] {
        let now = MonotonicInstant.milliseconds(100_000)
        let inWindow = now - .seconds(1)
        let flapHistory = Array(repeating: inWindow, count: t.flapChanges)
        return [
            ("starting, in grace", CheckStatus(health: .starting, consecutiveFailures: 0, graceEnds: now + .seconds(1))),
            ("starting, grace over", CheckStatus(health: .starting, consecutiveFailures: 0, graceEnds: now - .seconds(1))),
            ("healthy", CheckStatus(health: .healthy)),
            ("failing, \(t.failuresBeforeAction - 2) in a row", CheckStatus(health: .failing, consecutiveFailures: t.failuresBeforeAction - 2)),
            ("failing, \(t.failuresBeforeAction - 1) in a row", CheckStatus(health: .failing, consecutiveFailures: t.failuresBeforeAction - 1)),
            ("failing, \(t.failuresBeforeAction - 1) in a row, \(t.flapChanges - 1) changes in window",
             CheckStatus(health: .failing, consecutiveFailures: t.failuresBeforeAction - 1, verdictChanges: Array(flapHistory.dropLast()))),
            ("failed", CheckStatus(health: .failed, consecutiveFailures: t.failuresBeforeAction, verdictChanges: [inWindow])),
            ("flapping, changes in window", CheckStatus(health: .flapping, consecutiveFailures: t.failuresBeforeAction, verdictChanges: flapHistory)),
            ("flapping, window quiet", CheckStatus(health: .flapping, consecutiveFailures: t.failuresBeforeAction - 1, verdictChanges: [now - t.flapWindow])),
        ]
    }

    /// The transition table for docs/ha.md, with the default thresholds.
    public static func markdownTable() -> String {
        let t = CheckThresholds()
        let now = MonotonicInstant.milliseconds(100_000)
        let events: [(String, CheckEvent)] = [("passed", .passed(at: now)), ("failed", .failed(at: now, reason: "R")), ("domainStarted", .domainStarted(at: now))]
        var lines = [
            "| status (failures before action \(t.failuresBeforeAction), flapping at \(t.flapChanges) changes in \(t.flapWindow)) | event | next health | failures in a row | actions |",
            "|---|---|---|---|---|",
        ]
        for (name, status) in representatives(t) {
            for (eventName, event) in events {
                let (next, actions) = transition(from: status, on: event, thresholds: t)
                let list = actions.isEmpty ? "—" : actions.map(\.description).joined(separator: ", ")
                lines.append("| \(name) | \(eventName) | \(next.health.rawValue) | \(next.consecutiveFailures) | \(list) |")
            }
        }
        return lines.joined(separator: "\n")
    }
}

/// When a check counts as failed and when it is flapping (`[[vms.checks]]`, docs/config.md).
public struct CheckThresholds: Sendable, Equatable {
    public var failuresBeforeAction: Int
    /// After a domain starts, failures do not count for this long (the guest boots).
    public var startupGrace: Duration
    public var flapChanges: Int
    public var flapWindow: Duration

    public init(failuresBeforeAction: Int = 3, startupGrace: Duration = .seconds(60), flapChanges: Int = 4, flapWindow: Duration = .seconds(600)) {
        self.failuresBeforeAction = failuresBeforeAction
        self.startupGrace = startupGrace
        self.flapChanges = flapChanges
        self.flapWindow = flapWindow
    }
}

public enum CheckHealth: String, Sendable, CaseIterable, Codable {
    /// Its domain started; failures do not count until the start-up grace ends.
    case starting
    case healthy
    /// Failed, fewer times in a row than `failuresBeforeAction`.
    case failing
    /// Failed enough times in a row: recovery was asked for.
    case failed
    /// Its verdict changed too often: reported, not acted on.
    case flapping
}

public struct CheckStatus: Sendable, Equatable {
    public var health: CheckHealth
    public var consecutiveFailures: Int
    /// The end of the start-up grace of the last domain start.
    public var graceEnds: MonotonicInstant?
    /// When the verdict last changed between failed and healthy, within the flap window.
    public var verdictChanges: [MonotonicInstant]

    public init(health: CheckHealth = .starting, consecutiveFailures: Int = 0, graceEnds: MonotonicInstant? = nil, verdictChanges: [MonotonicInstant] = []) {
        self.health = health
        self.consecutiveFailures = consecutiveFailures
        self.graceEnds = graceEnds
        self.verdictChanges = verdictChanges
    }
}

public enum CheckEvent: Sendable, Equatable {
    case domainStarted(at: MonotonicInstant)
    case passed(at: MonotonicInstant)
    case failed(at: MonotonicInstant, reason: String)
}

public enum CheckAction: Sendable, Equatable, CustomStringConvertible {
    /// The check's health changed: an event for the stream, metrics and the console.
    case report(CheckHealth, String)
    /// The VM is down to its users: ask ``RecoveryPolicy`` what to do.
    case recover(String)

    public var description: String {
        switch self {
        case .report(let health, _): "report(\(health.rawValue))"
        case .recover: "recover"
        }
    }
}
