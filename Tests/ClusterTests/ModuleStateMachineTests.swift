import Foundation
import Testing
@testable import Cluster

@Suite struct ModuleStateMachineTests {
    /// Every event, with every replica value for peerConnected (not just the representatives).
    static let allEvents: [ModuleEvent] = ModuleEvent.representatives.filter {
        if case .peerConnected = $0 { return false } else { return true }
    } + PeerRole.allCases.flatMap { role in ReplicaState.allCases.map { ModuleEvent.peerConnected(peerRole: role, peerReplica: $0) } }

    static func outcomes() -> [(ModuleStatus, ModuleEvent, Result<ModuleTransition, ModuleTransitionError>)] {
        ModuleStatus.allValid.flatMap { status in
            allEvents.map { event in
                (status, event, Result { () throws(ModuleTransitionError) in try ModuleStateMachine.transition(from: status, on: event) })
            }
        }
    }

    @Test func neverPrimaryWithABadReplica() {
        for (status, event, result) in Self.outcomes() {
            guard case .success(let transition) = result else { continue }
            if transition.status.state == .prim || transition.status.state == .alone {
                #expect(transition.status.replica.canBePrimary, "\(status) + \(event) -> \(transition.status)")
            }
            #expect(transition.status.isValid, "\(status) + \(event) -> invalid \(transition.status)")
        }
    }

    @Test func startingAfterPeerLossNeedsTheVote() {
        for (status, event, result) in Self.outcomes() {
            guard case .success(let transition) = result, transition.status.state == .alone, status.state != .alone else { continue }
            switch (status.state, event) {
            case (.wait, .witnessVoteGranted): break
            case (.prim, .peerLost): #expect(transition.actions == [.requestWitnessVote])
            default: Issue.record("\(status) + \(event) reaches ALONE without a vote")
            }
        }
    }

    @Test func losingTheVoteSuspendsIOFirst() throws {
        for event in [ModuleEvent.witnessVoteDenied, .leaseExpired] {
            let transition = try ModuleStateMachine.transition(from: ModuleStatus(.alone, .upToDate), on: event)
            #expect(transition.status.state == .wait)
            #expect(transition.actions == [.suspendIO, .stopDomain, .demoteVolume])
        }
    }

    @Test func leavingARunningStateStopsTheDomain() {
        for (status, event, result) in Self.outcomes() {
            guard case .success(let transition) = result else { continue }
            let wasRunning = status.state == .prim || status.state == .alone
            let isRunning = transition.status.state == .prim || transition.status.state == .alone
            // A live migration is the one exception: the domain itself moves, from one primary to the next.
            if wasRunning && !isRunning && event != .liveMigrationCompleted {
                #expect(transition.actions.contains(.stopDomain), "\(status) + \(event)")
            }
            if !wasRunning && isRunning && event != .liveMigrationArrived {
                #expect(transition.actions.starts(with: [.promoteVolume, .startDomain]), "\(status) + \(event)")
            }
        }
    }

    @Test func splitBrainIsAnError() {
        for state in [ModuleState.prim, .alone] {
            #expect(throws: ModuleTransitionError.self) {
                try ModuleStateMachine.transition(from: ModuleStatus(state, .upToDate), on: .peerConnected(peerRole: .primary, peerReplica: .upToDate))
            }
        }
    }

    @Test func illegalEventsAreErrorsWithReasons() {
        #expect(throws: ModuleTransitionError.self) { try ModuleStateMachine.transition(from: ModuleStatus(.stop, .upToDate), on: .stopRequested) }
        #expect(throws: ModuleTransitionError.self) { try ModuleStateMachine.transition(from: ModuleStatus(.second, .outdated), on: .promoteRequested) }
        #expect(throws: ModuleTransitionError.self) { try ModuleStateMachine.transition(from: ModuleStatus(.prim, .upToDate), on: .resyncStarted(.target)) }
        #expect(throws: ModuleTransitionError.self) { try ModuleStateMachine.transition(from: ModuleStatus(.alone, .outdated), on: .peerLost) }
        do {
            _ = try ModuleStateMachine.transition(from: ModuleStatus(.wait, .syncTarget), on: .promoteRequested)
            Issue.record("promotion of a sync target was allowed")
        } catch {
            #expect(error.description == "promoteRequested is illegal in WAIT/syncTarget: replica is syncTarget, not up to date")
        }
    }

    @Test func voteWithABadReplicaDoesNotStart() throws {
        let transition = try ModuleStateMachine.transition(from: ModuleStatus(.wait, .outdated), on: .witnessVoteGranted)
        #expect(transition.status.state == .wait)
        #expect(!transition.actions.contains(.startDomain))
    }

    @Test func failoverAndReturnScenario() throws {
        var status = ModuleStatus(.stop, .unknown)
        func step(_ event: ModuleEvent) throws -> [ModuleAction] {
            let transition = try ModuleStateMachine.transition(from: status, on: event)
            status = transition.status
            return transition.actions
        }
        #expect(try step(.startRequested) == [])
        #expect(try step(.peerConnected(peerRole: .primary, peerReplica: .upToDate)) == [])
        #expect(status == ModuleStatus(.second, .unknown))
        _ = try step(.resyncStarted(.target))
        #expect(status == ModuleStatus(.second, .syncTarget))
        _ = try step(.resyncFinished)
        #expect(status == ModuleStatus(.second, .upToDate))
        #expect(try step(.peerLost) == [.requestWitnessVote])
        #expect(try step(.witnessVoteGranted) == [.promoteVolume, .startDomain])
        #expect(status == ModuleStatus(.alone, .upToDate))
        #expect(try step(.peerConnected(peerRole: .waiting, peerReplica: .outdated)) == [.startResync])
        _ = try step(.resyncStarted(.source))
        #expect(status == ModuleStatus(.prim, .syncSource))
        #expect(throws: ModuleTransitionError.self) { try step(.switchoverRequested) }  // peer still inconsistent
        _ = try step(.resyncFinished)
        #expect(try step(.switchoverRequested) == [.stopDomain, .demoteVolume])
        #expect(status.state == .second)
    }

    /// Live migration: the source gives the volume up without stopping a domain only when both
    /// copies are up to date, and the target takes it over only as an up-to-date secondary.
    @Test func liveMigrationMovesTheRoleNotTheDomain() throws {
        let source = try ModuleStateMachine.transition(from: ModuleStatus(.prim, .upToDate), on: .liveMigrationCompleted)
        #expect(source.status == ModuleStatus(.second, .upToDate) && source.actions == [.demoteVolume])
        let target = try ModuleStateMachine.transition(from: ModuleStatus(.second, .upToDate), on: .liveMigrationArrived)
        #expect(target.status == ModuleStatus(.prim, .upToDate) && target.actions == [.adoptMigratedDomain])
        for (status, event, result) in Self.outcomes() where [.liveMigrationCompleted, .liveMigrationArrived].contains(event) {
            guard case .success = result else { continue }
            #expect(status.replica == .upToDate, "\(status) + \(event)")
        }
        #expect(throws: ModuleTransitionError.self) { try ModuleStateMachine.transition(from: ModuleStatus(.second, .syncTarget), on: .liveMigrationArrived) }
        #expect(throws: ModuleTransitionError.self) { try ModuleStateMachine.transition(from: ModuleStatus(.alone, .upToDate), on: .liveMigrationCompleted) }
    }

    @Test func documentedTableMatchesCode() throws {
        try Repository.expectGeneratedSection("TABLE", in: "docs/state-machine.md", toBe: ModuleStateMachine.markdownTable(), rerun: "documentedTableMatchesCode")
    }
}
