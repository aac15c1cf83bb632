import Testing
@testable import Replication

/// libFuzzer-free version of `perf/Fuzz/PeerFrameFuzz`: thousands of mutated
/// valid streams with a fixed seed, checked against ``PeerStreamInvariants``.
@Suite struct PeerStreamPropertyTests {
    @Test func mutatedFramesKeepTheDecoderInvariants() {
        var rng = SplitMix64(seed: 0x5EED_1234)
        var stream: [UInt8] = []
        for message in sampleMessages { message.encode(into: &stream) }
        var decodedSomething = 0
        var failures: [String] = []
        for iteration in 0..<3000 {
            // Start from 1–3 valid frames, then flip, insert, delete or truncate bytes.
            var input: [UInt8] = []
            for _ in 0..<(1 + Int(rng.next() % 3)) {
                sampleMessages[Int(rng.next() % UInt64(sampleMessages.count))].encode(into: &input)
            }
            let mutations = Int(rng.next() % 4)
            for _ in 0..<mutations where !input.isEmpty {
                let at = Int(rng.next() % UInt64(input.count))
                switch rng.next() % 4 {
                case 0: input[at] ^= UInt8(truncatingIfNeeded: 1 << (rng.next() % 8))
                case 1: input.insert(UInt8(truncatingIfNeeded: rng.next()), at: at)
                case 2: input.remove(at: at)
                default: input.removeLast(Int(rng.next() % UInt64(input.count)))
                }
            }
            let repair = rng.next() % 2 == 0
            let problems = PeerStreamInvariants.violations(in: input, fragmentSeed: rng.next(), repairHeaders: repair)
            if !problems.isEmpty { failures.append("iteration \(iteration): \(problems)") }
            if (try? decodeMessages(repair ? PeerStreamInvariants.repairingHeaders(input) : input))?.isEmpty == false {
                decodedSomething += 1
            }
        }
        #expect(failures.isEmpty, "\(failures.prefix(5))")
        // The mutations must not be so destructive that nothing decodes.
        #expect(decodedSomething > 500)
    }

    @Test func unmutatedStreamDecodesCompletely() throws {
        var stream: [UInt8] = []
        for message in sampleMessages { message.encode(into: &stream) }
        #expect(PeerStreamInvariants.violations(in: stream, fragmentSeed: 1, repairHeaders: false).isEmpty)
        #expect(try decodeMessages(stream) == sampleMessages)
    }
}
