import Testing

@testable import Simulation

/// The simulator runs the daemon's own decision code; these pin its behaviour to seeds.
@Suite("Deterministic simulator")
struct SimulatorTests {
    /// A seed stands for one schedule and one run: the same seed gives the same faults and the
    /// same outcome, whatever else runs.
    @Test func aSeedReplaysExactly() {
        for seed: UInt64 in [1, 42, 3215, 0xDEAD_BEEF] {
            #expect(Simulator.run(seed: seed) == Simulator.run(seed: seed), "seed \(seed)")
        }
        #expect(Simulator.schedule(seed: 1) != Simulator.schedule(seed: 2))
    }

    /// Single faults (a crash, a vmhad restart, a cut network, an isolated host, the witness
    /// down or cut off, a switchover) keep all four invariants. CI runs 10 000 such schedules in
    /// release (`scripts/test`); this is a fixed slice of them.
    @Test func singleFaultsKeepEveryInvariant() {
        for seed: UInt64 in 1...60 {
            let result = Simulator.run(seed: seed, maxFaults: 1)
            #expect(result.violations.isEmpty, "seed \(seed) \(result.schedule.steps.map(\.fault)): \(result.violations)")
        }
    }

    /// vmha-sim --max-faults 1 seed 3215 before the fix: a vmhad back within the detection
    /// timeout promoted vm2 on the peer's stale "SECOND" while the peer took it over with the
    /// vote; the VM ran on both hosts. Fixed: a waiting module acts on the peer's summary only
    /// once the peer's heartbeat echoes its incarnation.
    @Test func aDaemonBackWithinTheDetectionTimeoutDoesNotRaceTheTakeover() {
        let result = Simulator.run(seed: 3215, maxFaults: 1)
        #expect(result.schedule.steps.map(\.fault) == [.crash(host: 1, downMS: 2835)])
        #expect(result.violations.isEmpty, "\(result.violations)")
    }

    /// The checker itself: a schedule whose faults make the cluster lose acknowledged writes must
    /// be reported. These are real findings, open in issue 12 (docs/simulator.md, "Known
    /// violations"): when the vote holder wrote alone and then lost the vote (witness down) or
    /// died, the other host's older replica is elected or given the vote.
    @Test(arguments: [UInt64(189), 197, 353])
    func knownDoubleFaultLosses(seed: UInt64) {
        let result = Simulator.run(seed: seed, maxFaults: 2)
        withKnownIssue("a stale replica elected or voted in after the vote holder wrote alone (issue 12, docs/simulator.md)") {
            #expect(result.violations.isEmpty, "seed \(seed) \(result.schedule.steps.map(\.fault)): \(result.violations)")
        }
        #expect(result.violations.contains { $0.invariant == .neverTwoPrimaries || $0.invariant == .noAcknowledgedWriteLost })
    }
}
