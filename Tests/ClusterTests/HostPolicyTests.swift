import Testing

@testable import Cluster
import ReplicationPolicy

/// The control loop's decisions, on snapshots: no daemon, no guests, no clock.
@Suite("Host policy")
struct HostPolicyTests {
    func vm(
        _ name: String, _ state: ModuleState, _ replica: ReplicaState = .upToDate, peer: Heartbeat.VMSummary? = nil, preferred: String = "a",
        data: DataRelation? = nil
    ) -> HostSnapshot.VM {
        HostSnapshot.VM(
            name: name, status: ModuleStatus(state, replica), localReplica: replica, peerSummary: peer, peerData: data, preferredHost: preferred,
            resources: Resources(vcpus: 1, memoryMiB: 512))
    }

    func snapshot(_ vms: [HostSnapshot.VM], peerState: PeerState = .alive, peerAlive: Bool = true, mustFence: Bool = false, mayRun: Bool = false) -> HostSnapshot {
        HostSnapshot(
            me: "a", peer: "b", vms: vms, peerState: peerState, heardFromPeer: true, peerAlive: peerAlive, mustFence: mustFence, mayRun: mayRun,
            witnessHoldsPeerOutdated: mayRun, hadLease: mayRun, fenced: false, witnessConfigured: true, writePolicy: mayRun ? .complete : .hold,
            localCapacity: Resources(vcpus: 8, memoryMiB: 8192), maxConcurrentStarts: 2)
    }

    @Test func aLostPeerIsFedToEveryModuleAndTheVoteIsWanted() {
        let s = snapshot([vm("v1", .second), vm("v2", .prim)], peerAlive: false)
        let decisions = HostPolicy.decide(s)
        #expect(Array(decisions.prefix(3)) == [.peerLost, .feed(vm: "v1", .peerLost), .feed(vm: "v2", .peerLost)])
        #expect(!decisions.contains { if case .failover = $0 { true } else { false } }, "no failover without the vote")
        #expect(!s.wantsLease, "the snapshot still says alive")
        var lost = s
        lost.peerState = .lost
        #expect(lost.wantsLease)
    }

    @Test func withTheVoteTheLostPeersVMsStartInWaves() {
        let vms = (1...5).map { vm("v\($0)", .wait, peer: nil, preferred: "b") } + [vm("v6", .wait, .outdated, preferred: "b")]
        let decisions = HostPolicy.decide(snapshot(vms, peerState: .lost, peerAlive: false, mayRun: true))
        guard case .failover(let plan)? = decisions.last else {
            Issue.record("no failover in \(decisions)")
            return
        }
        #expect(plan.waves == [["v1", "v2"], ["v3", "v4"], ["v5"]])
        #expect(plan.notStarted.map(\.name) == ["v6"])
    }

    /// docs/witness.md: cut off without the vote while the peer took the VM over, ours yields
    /// before the peer's PRIM is taken for a split brain.
    @Test func aCutOffPrimaryWithoutTheVoteYieldsToThePeer() {
        let s = snapshot([vm("v1", .alone, peer: .init(name: "v1", state: .alone, replica: .upToDate))], mayRun: false)
        let decisions = HostPolicy.decide(s)
        let feeds = decisions.compactMap { if case .feed(_, let event) = $0 { event } else { nil } }
        #expect(Array(feeds.prefix(2)) == [.witnessVoteDenied, .peerConnected(peerRole: .primary, peerReplica: .upToDate)])
    }

    @Test func aPrimaryThePeerDoesNotEchoFencesWithoutTheVote() {
        let decisions = HostPolicy.decide(snapshot([vm("v1", .prim, peer: .init(name: "v1", state: .second, replica: .upToDate))], mustFence: true))
        #expect(decisions.contains(.fence(["v1"])))
        #expect(decisions.contains(.setWritePolicy(.fail)), "fenced, writes the peer misses fail so that the pause can drain")
        let voted = HostPolicy.decide(snapshot([vm("v1", .prim)], mustFence: true, mayRun: true))
        #expect(!voted.contains { if case .fence = $0 { true } else { false } }, "the vote lets it run on")
    }

    @Test func bothWaitingThePreferredHostPromotes() {
        let peer = Heartbeat.VMSummary(name: "v1", state: .wait, replica: .upToDate)
        #expect(HostPolicy.decide(snapshot([vm("v1", .wait, peer: peer, preferred: "a")])).contains(.feed(vm: "v1", .promoteRequested)))
        #expect(!HostPolicy.decide(snapshot([vm("v1", .wait, peer: peer, preferred: "b")])).contains(.feed(vm: "v1", .promoteRequested)))
        // The peer's summary already acted on (peerConnected did not decide it): the only usable
        // replica runs it, preferred or not.
        var waiting = vm("v1", .wait, peer: Heartbeat.VMSummary(name: "v1", state: .wait, replica: .outdated), preferred: "b")
        waiting.lastPeer = waiting.peerSummary
        #expect(HostPolicy.decide(snapshot([waiting])) == [.feed(vm: "v1", .promoteRequested)])
    }

    /// vmha-sim seed 15860: our datagrams to the peer were lost (one way) while its heartbeats
    /// still echoed the last one it heard; on that old echo we elected ourselves while the peer,
    /// calling us lost, took the VM over with the vote. An echo older than the fence timeout
    /// (`mustFence`) is no proof the peer is not taking over: no election on it.
    @Test func anElectionNeedsAFreshEchoNotAnOldOne() {
        let peer = Heartbeat.VMSummary(name: "v1", state: .wait, replica: .upToDate)
        let fresh = snapshot([vm("v1", .wait, peer: peer, preferred: "a")])
        #expect(fresh.peerHeardUsRecently && HostPolicy.decide(fresh).contains(.feed(vm: "v1", .promoteRequested)))
        let stale = snapshot([vm("v1", .wait, peer: peer, preferred: "a")], mustFence: true)
        #expect(stale.peerHeardUs && !stale.peerHeardUsRecently)
        #expect(!HostPolicy.decide(stale).contains(.feed(vm: "v1", .promoteRequested)))
    }

    /// vmha-sim seed 4454 (six faults): right after handing the VM over, a delayed heartbeat of
    /// the peer from before its resync finished showed it WAIT with older data; the "newer copy
    /// runs it" rule promoted us again while the peer took the promote. A module that handed the
    /// VM over waits for the peer.
    @Test func aHostThatHandedTheVMOverDoesNotTakeItBackOnAnOldSummary() {
        let waiting = Heartbeat.VMSummary(name: "v1", state: .wait, replica: .upToDate)
        var handedOver = vm("v1", .second, peer: waiting, data: .localNewer)
        handedOver.handedOver = true
        #expect(!HostPolicy.decide(snapshot([handedOver])).contains(.feed(vm: "v1", .promoteRequested)))
    }

    /// `ClusterNode.fenceWatchdog` applies this rule while the loop is busy (vmha-sim seed 13232).
    @Test func theFenceRuleAloneNamesTheRunningVMs() {
        let vms = [vm("v1", .prim), vm("v2", .second), vm("v3", .alone)]
        #expect(HostPolicy.fenceNow(snapshot(vms, mustFence: true)) == ["v1", "v3"])
        #expect(HostPolicy.fenceNow(snapshot(vms, mustFence: true, mayRun: true)) == nil, "the vote covers it")
        #expect(HostPolicy.fenceNow(snapshot(vms)) == nil, "a fresh echo covers it")
    }

    @Test func aResyncBecomesEvents() {
        var v = vm("v1", .second, .upToDate, peer: .init(name: "v1", state: .prim, replica: .upToDate))
        v.lastPeer = v.peerSummary
        v.localReplica = .syncTarget
        #expect(HostPolicy.decide(snapshot([v])) == [.feed(vm: "v1", .resyncStarted(.target))])
    }
}

extension HostPolicyTests {
    /// vmha-sim seed 105: the peer's vmhad restart (grace) kept this PRIM from going ALONE while
    /// it was isolated and fenced; the peer came back, took the VM over with the vote, and when
    /// the links healed the unfence resumed this host's domain: the VM ran on both hosts.
    @Test func aFencedPrimaryWhoseVMThePeerTookOverYieldsInsteadOfResuming() {
        var s = snapshot([vm("v1", .prim, peer: .init(name: "v1", state: .alone, replica: .upToDate))], mustFence: false, mayRun: false)
        s.fenced = true
        s.writePolicy = .fail
        let decisions = HostPolicy.decide(s)
        let feeds = decisions.compactMap { if case .feed(_, let event) = $0 { event } else { nil } }
        #expect(Array(feeds.prefix(3)) == [.peerLost, .witnessVoteDenied, .peerConnected(peerRole: .primary, peerReplica: .upToDate)])
        #expect(decisions.contains(.unfence([])), "the fence lifts, but no domain of a VM the peer runs is resumed")
    }

    // MARK: - Whose copy is newer (the generations in the heartbeat)

    @Test func bothWaitingTheNewerCopyRunsWhereverItIs() {
        let waiting = Heartbeat.VMSummary(name: "v1", state: .wait, replica: .upToDate)
        // Not the preferred host, but ours holds writes the peer lacks (we ran it alone, then lost the vote).
        let newer = HostPolicy.decide(snapshot([vm("v1", .wait, peer: waiting, preferred: "b", data: .localNewer)]))
        #expect(newer.contains(.feed(vm: "v1", .promoteRequested)))
        // The preferred host, but the peer's copy is newer: ours is Outdated and does not run.
        let older = HostPolicy.decide(snapshot([vm("v1", .wait, peer: waiting, preferred: "a", data: .peerNewer)]))
        #expect(older.contains(.setReplica(vm: "v1", .outdated)))
        #expect(!older.contains(.feed(vm: "v1", .promoteRequested)))
        // Diverged: neither runs it; an operator decides.
        let diverged = HostPolicy.decide(snapshot([vm("v1", .wait, peer: waiting, preferred: "a", data: .diverged)]))
        #expect(!diverged.contains(.feed(vm: "v1", .promoteRequested)))
        // The same data: the preferred host, as before.
        #expect(HostPolicy.decide(snapshot([vm("v1", .wait, peer: waiting, preferred: "a", data: .same)])).contains(.feed(vm: "v1", .promoteRequested)))
    }

    /// vmha-sim seed 197 at 2 faults: a cut-off ALONE (writes held, never answered) went PRIM over
    /// the copy of a peer that had run the VM on the vote, and the link refused forever.
    @Test func aRunningCopyOlderThanThePeersYields() {
        let waiting = Heartbeat.VMSummary(name: "v1", state: .wait, replica: .upToDate)
        let decisions = HostPolicy.decide(snapshot([vm("v1", .alone, peer: waiting, data: .peerNewer)]))
        // It yields first (ALONE + peerConnected would make it the PRIM of the newer copy).
        let feeds = decisions.compactMap { if case .feed(_, let event) = $0 { event } else { nil } }
        #expect(feeds.first == .witnessVoteDenied, "\(decisions)")
    }

    /// vmha-sim seed 353 at 2 faults: the newer copy became the SECOND of an older running one.
    @Test func aNewerCopyIsNeverTheSecondaryOfAnOlderRunningOne() {
        let running = Heartbeat.VMSummary(name: "v1", state: .alone, replica: .upToDate)
        let decisions = HostPolicy.decide(snapshot([vm("v1", .wait, peer: running, data: .localNewer)]))
        #expect(!decisions.contains { if case .feed(_, .peerConnected) = $0 { true } else { false } })
        // Once the peer yielded, a secondary holding the newer copy runs it.
        let yielded = Heartbeat.VMSummary(name: "v1", state: .wait, replica: .outdated)
        #expect(HostPolicy.decide(snapshot([vm("v1", .second, peer: yielded, data: .localNewer)])).contains(.feed(vm: "v1", .promoteRequested)))
    }

    /// The vote alone is not enough to answer writes the peer misses: the witness must hold the
    /// peer outdated, or it could give the peer the vote over them once our lease ran out.
    @Test func writingAloneNeedsTheWitnessToHoldThePeerOutdated() {
        var s = snapshot([vm("v1", .wait, preferred: "b")], peerState: .lost, peerAlive: false, mayRun: true)
        s.witnessHoldsPeerOutdated = false
        s.writePolicy = .complete
        let decisions = HostPolicy.decide(s)
        #expect(decisions.contains(.setWritePolicy(.hold)))
        #expect(!decisions.contains { if case .failover = $0 { true } else { false } })
        #expect(!s.mayRunAlone && s.wantsLease)
        s.witnessHoldsPeerOutdated = true
        #expect(s.mayRunAlone)
        #expect(HostPolicy.decide(s).contains { if case .failover = $0 { true } else { false } })
        // Not known since this daemon started: asked for, even with the peer alive and nothing to run.
        var fresh = snapshot([vm("v1", .second)])
        fresh.witnessHoldsPeerOutdated = nil
        #expect(fresh.wantsLease)
        fresh.witnessHoldsPeerOutdated = false
        #expect(!fresh.wantsLease)
    }

    /// vmha-sim, four faults: every promote datagram of a switchover was lost and both hosts
    /// stayed SECOND. The host that handed over asks again until the peer runs the VM.
    @Test func aHandOverIsRepeatedUntilThePeerRunsTheVM() {
        var handedOver = vm("v1", .second, peer: Heartbeat.VMSummary(name: "v1", state: .second, replica: .upToDate))
        handedOver.handedOver = true
        #expect(HostPolicy.decide(snapshot([handedOver])).contains(.resendPromote("v1")))
        handedOver.peerSummary = Heartbeat.VMSummary(name: "v1", state: .prim, replica: .upToDate)
        let done = HostPolicy.decide(snapshot([handedOver]))
        #expect(done.contains(.handOverCompleted("v1")) && !done.contains(.resendPromote("v1")))
        // Lost peer: no resend; the module leaves SECOND, and the flag with it.
        handedOver.peerSummary = Heartbeat.VMSummary(name: "v1", state: .second, replica: .upToDate)
        #expect(!HostPolicy.decide(snapshot([handedOver], peerAlive: false)).contains(.resendPromote("v1")))
        handedOver.status = ModuleStatus(.wait, .upToDate)
        handedOver.settleFlags()
        #expect(!handedOver.handedOver)
    }

    /// vmha-sim seed 14393 at four faults: the peer died just after a resync toward our SECOND
    /// began (the volume already Inconsistent, the module still SECOND/UpToDate); the failover in
    /// the same step must see the Inconsistent copy, not the status's stale UpToDate.
    @Test func aFailoverInThePeerLossStepSeesTheReplicaAsTheVolumesShowIt() {
        var second = vm("v1", .second, preferred: "b")
        second.localReplica = .inconsistent
        let decisions = HostPolicy.decide(snapshot([second], peerState: .alive, peerAlive: false, mayRun: true))
        #expect(decisions.contains(.feed(vm: "v1", .peerLost)))
        #expect(decisions.contains(.setReplica(vm: "v1", .inconsistent)))
        guard case .failover(let plan)? = decisions.last else {
            Issue.record("no failover plan in \(decisions)")
            return
        }
        #expect(plan.waves.isEmpty && plan.notStarted.map(\.name) == ["v1"])
    }

    @Test func thePeerHasOurWritesOnlyWhenEveryVMIsInSync() {
        let second = Heartbeat.VMSummary(name: "v1", state: .second, replica: .upToDate)
        var s = snapshot([vm("v1", .prim, peer: second, data: .same), vm("v2", .second, data: .same), vm("v3", .stop)])
        #expect(s.peerHasOurWrites)
        s.vms[0].status.replica = .syncSource
        #expect(!s.peerHasOurWrites, "a resync is running")
        s.vms[0].status.replica = .upToDate
        s.vms[1] = vm("v2", .wait, data: .localNewer)
        #expect(!s.peerHasOurWrites, "a waiting copy holds writes the peer lacks")
        s.vms[1] = vm("v2", .alone)
        #expect(!s.peerHasOurWrites)
        s.vms[1] = vm("v2", .second, data: .same)
        s.peerState = .lost
        #expect(!s.peerHasOurWrites, "nothing is known in sync with a lost peer")
    }
}

/// Numbered hand-overs (vmha-sim seed 830429813).
@Suite struct PromoteAcceptanceTests {
    @Test func aStalePromoteIsRefusedOnlyWhileWeHandTheVMOver() {
        // We handed it back (our hand-over 2): the peer's resend of hand-over 1 is stale.
        #expect(!HostPolicy.acceptsPromote(handingOver: true, ownHandover: 2, promoteHandover: 1))
        #expect(!HostPolicy.acceptsPromote(handingOver: true, ownHandover: 2, promoteHandover: 2))
        // The peer ran it and handed it back to us before we saw it run: a newer number.
        #expect(HostPolicy.acceptsPromote(handingOver: true, ownHandover: 2, promoteHandover: 3))
        // Not handing it over (e.g. restarted, or it came by a failover): carried out.
        #expect(HostPolicy.acceptsPromote(handingOver: false, ownHandover: 7, promoteHandover: 1))
        // An older peer sends no number.
        #expect(HostPolicy.acceptsPromote(handingOver: true, ownHandover: 2, promoteHandover: nil))
    }

}

extension HostPolicyTests {
    /// Automatic failback returns a failover's VM to its preferred host — but not while a
    /// checker's hold-down holds it here, nor to a peer whose host checks fail (issue 15).
    @Test func failbackWaitsForTheHoldDownAndAHealthyPeer() {
        var back = vm("v1", .prim, peer: Heartbeat.VMSummary(name: "v1", state: .second, replica: .upToDate), preferred: "b")
        back.failback = .automatic
        back.arrivedByFailover = true
        #expect(HostPolicy.decide(snapshot([back])).contains(.failBack("v1")))
        var held = back
        held.held = true
        #expect(!HostPolicy.decide(snapshot([held])).contains(.failBack("v1")))
        var troubled = snapshot([back])
        troubled.peerFailingHostChecks = ["interface vmbr0"]
        #expect(!HostPolicy.decide(troubled).contains(.failBack("v1")))
    }
}
