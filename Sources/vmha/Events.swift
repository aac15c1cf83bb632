import ArgumentParser
import Cluster
import Foundation

/// `vmha events`: the node's numbered state changes, oldest first; `--follow` keeps reading.
struct Events: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The local vmhad's state changes, numbered: module transitions, peer, lease, fence, notes.",
        discussion: """
            Each line: sequence, time, what changed. vmhad keeps the newest 2000; a reader that fell
            further behind is told so. Sequences start again at 1 when vmhad restarts (new incarnation).
            """)
    @OptionGroup var control: ControlOptions
    @Option(help: "Only events after this sequence number.") var since: UInt64?
    @Flag(help: "Keep printing new events until interrupted.") var follow = false
    @Flag(help: "One JSON object per event.") var json = false

    func run() throws {
        var after = since
        var incarnation: UInt64?
        while true {
            let response = try control.send(ControlRequest(command: "events", since: after))
            try failIfRefused(response)
            guard let report = response.events else { throw ExitCode(1) }
            if let known = incarnation, known != report.incarnation {
                // vmhad restarted: its sequences started again; read the new incarnation from its start.
                print("-- vmhad on \(report.host) restarted (incarnation \(report.incarnation))")
                incarnation = report.incarnation
                after = nil
                continue
            }
            incarnation = report.incarnation
            if report.missed { print("-- events after #\(after ?? 0) were dropped before they were read") }
            for event in report.events { try print(json ? Self.json(event) : Self.line(event)) }
            after = report.lastSequence
            guard follow else { return }
            // A reader's polling interval, not a decision of the node.
            Thread.sleep(forTimeInterval: 0.5)
        }
    }

    static func json(_ event: NodeEvent) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(event), as: UTF8.self)
    }

    static func line(_ event: NodeEvent) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let time = formatter.string(from: Date(timeIntervalSince1970: event.time))
        let what = switch event.kind {
        case .module(let vm, let from, let to, let cause, let actions):
            "\(vm): \(from) —\(cause)→ \(to)\(actions.isEmpty ? "" : " [\(actions.joined(separator: ", "))]")"
        case .actionFailed(let vm, let action, let reason): "\(vm): \(action) failed: \(reason)"
        case .peer(let state): "peer \(state.rawValue)"
        case .lease(let outcome): "witness vote \(outcome)"
        case .fence(let on): on ? "fenced: domains paused" : "fence lifted"
        case .writePolicy(let policy): "unreplicated writes: \(policy)"
        case .note(let text): text
        }
        return "#\(event.sequence) \(time) \(what)"
    }
}
