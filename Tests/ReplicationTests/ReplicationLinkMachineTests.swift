import Foundation
import Testing

@testable import Replication

@Suite("Replication link state machine")
struct ReplicationLinkMachineTests {
    typealias M = ReplicationLinkMachine

    func walk(_ events: [M.Event], from state: M.State = .standalone) throws -> M.State {
        var state = state
        for event in events { state = try M.transition(from: state, on: event).state }
        return state
    }

    @Test func thePrimarysPaths() throws {
        #expect(try walk([.start, .tcpConnected, .authenticated, .decided(.inSync)]) == .connected)
        #expect(try walk([.start, .tcpConnected, .authenticated, .decided(.source), .resyncDone]) == .connected)
        #expect(try walk([.start, .tcpConnected, .authenticated, .decided(.inSync), .resyncRequested, .resyncDone]) == .connected, "verify")
        #expect(try walk([.start, .tcpConnected, .authenticated, .decided(.source), .failed, .start]) == .connecting, "a broken resync retries")
        #expect(try walk([.start, .tcpConnected, .authenticated, .decided(.refused), .failed, .start]) == .connecting)
        #expect(try M.transition(from: .deciding, on: .decided(.target)).actions == [.markInconsistent, .attach])
    }

    @Test func theSecondarysPaths() throws {
        #expect(try walk([.offered, .decided(.target), .resyncDone]) == .connected)
        #expect(try walk([.offered, .decided(.inSync), .offered]) == .deciding, "a new connection replaces the old one")
        #expect(try M.transition(from: .connected, on: .offered).actions == [.close, .exchangeVolumeState])
        #expect(try walk([.offered, .decided(.splitBrain), .offered]) == .deciding, "an offer after an operator settled it re-decides")
        #expect(try walk([.offered, .decided(.inSync), .resyncDone]) == .connected, "the primary resynced grains only its bitmap held")
    }

    @Test func splitBrainStaysDownUntilAnOperatorActs() throws {
        let state = try walk([.start, .tcpConnected, .authenticated, .decided(.splitBrain), .failed])
        #expect(state == .splitBrain)
        #expect(throws: M.TransitionError.self) { try M.transition(from: .splitBrain, on: .start) }
        #expect(try M.transition(from: .splitBrain, on: .stopped).state == .standalone)
    }

    @Test func everyFailureOfALiveLinkTracksChanges() throws {
        for state in [M.State.connecting, .handshaking, .deciding, .syncSource, .syncTarget, .connected] {
            let result = try M.transition(from: state, on: .failed)
            #expect(result.state == .standalone && result.actions.contains(.trackChanges), "\(state)")
        }
    }

    @Test func outOfOrderEventsAreIllegal() {
        #expect(throws: M.TransitionError.self) { try M.transition(from: .standalone, on: .decided(.inSync)) }
        #expect(throws: M.TransitionError.self) { try M.transition(from: .connected, on: .tcpConnected) }
        #expect(throws: M.TransitionError.self) { try M.transition(from: .deciding, on: .resyncDone) }
        #expect(throws: M.TransitionError.self) { try M.transition(from: .syncTarget, on: .resyncRequested) }
        #expect(throws: M.TransitionError.self) { try M.transition(from: .connecting, on: .offered) }
    }

    @Test func linkTableMatchesCode() throws {
        let begin = "<!-- BEGIN GENERATED LINK TABLE -->\n", end = "<!-- END GENERATED LINK TABLE -->"
        let generated = M.markdownTable() + "\n"
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/state-machine.md")
        var doc = try String(contentsOf: path, encoding: .utf8)
        let start = try #require(doc.range(of: begin))
        let stop = try #require(doc.range(of: end, range: start.upperBound..<doc.endIndex))
        if ProcessInfo.processInfo.environment["VMHA_UPDATE_DOCS"] == "1" {
            doc.replaceSubrange(start.upperBound..<stop.lowerBound, with: generated)
            try doc.write(to: path, atomically: true, encoding: .utf8)
            return
        }
        #expect(String(doc[start.upperBound..<stop.lowerBound]) == generated,
                "docs/state-machine.md is stale: run VMHA_UPDATE_DOCS=1 swift test --filter linkTableMatchesCode")
    }
}
