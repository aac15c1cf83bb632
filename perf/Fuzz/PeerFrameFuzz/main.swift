// libFuzzer target for the peer link's I/O-free core: PeerFrameDecoder,
// PeerMessage and PeerHandshake (both roles). Invariants: see
// PeerStreamInvariants (no trap; fragmentation-independent results; every
// decoded frame and message re-encodes to its input bytes).
//
// Fuzz build (libFuzzer provides main):
//   swift build --product PeerFrameFuzz -c debug -Xswiftc -sanitize=fuzzer,address
//   .build/debug/PeerFrameFuzz -max_total_time=60 perf/Fuzz/PeerFrameFuzz/corpus
// Plain build: the top-level code below is the entry point instead; it replays
// the files named on the command line (e.g. a crash-* artifact) through the
// same function, and with no arguments writes a seed corpus.

import Replication

#if os(Linux)
import Glibc
#endif

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    // Byte 0 picks the mode, bytes 1–8 the fragmentation; the rest is the stream.
    let mode = data[0]
    var seed: UInt64 = 0
    for i in 1..<min(size, 9) { seed = seed << 8 | UInt64(data[i]) }
    let stream = Array(UnsafeBufferPointer(start: data + min(size, 9), count: size - min(size, 9)))
    let problems = PeerStreamInvariants.violations(in: stream, fragmentSeed: seed, repairHeaders: mode & 1 == 1)
    if !problems.isEmpty {
        fatalError("PeerFrameFuzz invariant violated: \(problems)")
    }
    return 0
}

#if !FUZZING
/// Replays each file given as an argument; with none, writes a seed corpus of
/// valid frame streams into ./corpus-seed/ (one file per frame type).
func replayOrSeed() {
    let arguments = CommandLine.arguments.dropFirst()
    if arguments.isEmpty {
        mkdir("corpus-seed", 0o755)
        for (index, stream) in PeerStreamInvariants.seedStreams().enumerated() {
            for mode: UInt8 in [0, 1] {
                let bytes = [mode, 0, 0, 0, 0, 0, 0, 0, UInt8(index)] + stream
                guard let file = fopen("corpus-seed/seed-\(index)-\(mode)", "wb") else { continue }
                _ = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
                fclose(file)
            }
        }
        print("wrote seed corpus to corpus-seed/")
        return
    }
    for path in arguments {
        guard let file = fopen(path, "rb") else {
            print("cannot open \(path)")
            exit(2)
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, file) }
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        fclose(file)
        _ = bytes.withUnsafeBufferPointer { fuzz($0.baseAddress ?? UnsafePointer(bitPattern: 1)!, $0.count) }
        print("\(path): ok (\(bytes.count) bytes)")
    }
}
replayOrSeed()
#endif
