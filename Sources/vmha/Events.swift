import ArgumentParser
import Cluster
import Foundation

/// `vmha events`: the node's numbered state changes, oldest first; `--follow` keeps reading.
struct Events: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The local vmhad's state, then each change as it happens, numbered.",
        discussion: """
            First the current state (one `exists` line per VM, the peer, each network, the vote,
            the fence), then every change: module transitions, replication links, resync start /
            progress (about every 2 s: done, total, rate, ETA) / end (bytes resynced, seconds),
            failover waves and what was not started and why, peer and networks, vote, fence,
            split brains and how they were settled, operator commands and their outcome, failed
            actions. With --since, the events after that sequence number instead of the state.
            Sequence numbers go on across vmhad restarts: the history is kept in the state
            directory (events.jsonl, rotated); vmhad serves the newest 2000, and a reader that fell
            further behind is told so.
            """)
    @OptionGroup var control: ControlOptions
    @Option(help: "The events after this sequence number (instead of the current state).") var since: UInt64?
    @Flag(help: "Print what there is and exit instead of following.") var noFollow = false
    @Flag(help: "One JSON object per event.") var json = false

    func run() throws {
        var request = since.map { ControlRequest(command: "events", since: $0) } ?? ControlRequest(command: "events", now: true)
        var after = since
        while true {
            let response: ControlResponse
            do {
                response = try control.send(request)
            } catch where !noFollow && after != nil {
                // vmhad restarting: a reader's retry interval, not a decision of the node.
                print("-- vmhad not reachable (\(error)); trying again")
                Thread.sleep(forTimeInterval: 1)
                continue
            }
            try failIfRefused(response)
            guard let report = response.events else { throw ExitCode(1) }
            if let seen = after, report.lastSequence < seen {
                print("-- vmhad on \(report.host) numbers from 1 again (its event history was removed)")
                after = nil
                request = ControlRequest(command: "events")
                continue
            }
            if report.missed { print("-- events after #\(after ?? 0) were dropped before they were read") }
            for event in report.events { try print(json ? Self.json(event) : Self.line(event)) }
            fflush(nil)
            guard !noFollow else { return }
            after = report.lastSequence
            // The node answers when there is something new (or after 30 s with nothing).
            request = ControlRequest(command: "events", since: report.lastSequence, waitSeconds: 30)
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
        case .link(let volume, let state): "\(volume): link \(state)"
        case .resyncStarted(let volume, let total, let method): "\(volume): resync started (\(method)), \(total) bytes"
        case .resyncProgress(let volume, let done, let total, let rate, let eta):
            "\(volume): resync \(done)/\(total) bytes, \(Int(rate)) B/s\(eta.map { ", ETA \(Int($0.rounded(.up))) s" } ?? "")"
        case .resyncFinished(let volume, let bytes, let sent, let seconds):
            "\(volume): resync finished: \(bytes) bytes resynced (\(sent) sent) in \(String(format: "%.2f", seconds)) s"
        case .splitBrain(let volume, let resolution): "\(volume): split brain: \(resolution)"
        case .network(let index, let up): "heartbeat network \(index) \(up ? "up" : "silent")"
        case .failoverWave(let number, let vms): "failover wave \(number): \(vms.joined(separator: ", "))"
        case .notStarted(let vm, let reason): "\(vm): not started: \(reason)"
        case .command(let name, let vm, let ok, let detail): "command \(name)\(vm.map { " \($0)" } ?? ""): \(ok ? "done" : "refused")\(detail.isEmpty ? "" : ": \(detail)")"
        case .check(let vm, let check, let health, let detail): "\(vm): check \(check) \(health): \(detail)"
        case .hostCheck(let host, let check, let health, let detail): "\(host): host check \(check) \(health): \(detail)"
        case .recovery(let vm, let action, let detail): "\(vm): recovery \(action): \(detail)"
        case .exists(let vm, let status, let links):
            "\(vm): exists \(status)\(links.isEmpty ? "" : " " + links.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))"
        }
        return "#\(event.sequence) \(time) \(what)"
    }
}
