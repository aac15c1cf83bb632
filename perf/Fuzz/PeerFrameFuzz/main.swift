// libFuzzer target for the peer link's I/O-free core: PeerFrameDecoder,
// PeerMessage and PeerHandshake (both roles). Invariants: see
// PeerStreamInvariants (no trap; fragmentation-independent results; every
// decoded frame and message re-encodes to its input bytes).
//
// Fuzz build:
//   swift build --product PeerFrameFuzz -c debug -Xswiftc -sanitize=fuzzer,address
//   .build/debug/PeerFrameFuzz -max_total_time=60 CORPUS_DIR
// main.swift always has an entry point (top-level code), and it wins over
// libFuzzer's `main`. So at run time it looks for libFuzzer's
// `LLVMFuzzerRunDriver`: if the fuzzer runtime is linked in, it hands control
// to it; in a plain build it replays the files named on the command line
// (e.g. a crash-* artifact) through the same function, or with
// `--write-seeds DIR` writes a seed corpus.

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

typealias FuzzerDriver = @convention(c) (
    UnsafeMutablePointer<CInt>, UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt

/// libFuzzer's driver, if this binary was built with `-sanitize=fuzzer`.
func fuzzerDriver() -> FuzzerDriver? {
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "LLVMFuzzerRunDriver") else { return nil }
    return unsafeBitCast(symbol, to: FuzzerDriver.self)
}

/// Replays each file given as an argument, or writes a seed corpus of valid
/// frame streams (one file per frame type and mode) with `--write-seeds DIR`.
func replayOrSeed() {
    let arguments = Array(CommandLine.arguments.dropFirst())
    if arguments.count == 2 && arguments[0] == "--write-seeds" {
        let dir = arguments[1]
        mkdir(dir, 0o755)
        for (index, stream) in PeerStreamInvariants.seedStreams().enumerated() {
            for mode: UInt8 in [0, 1] {
                let bytes = [mode, 0, 0, 0, 0, 0, 0, 0, UInt8(index)] + stream
                guard let file = fopen("\(dir)/seed-\(index)-\(mode)", "wb") else { continue }
                _ = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
                fclose(file)
            }
        }
        print("wrote seed corpus to \(dir)/")
        return
    }
    if arguments.isEmpty {
        print("usage: PeerFrameFuzz FILE... | --write-seeds DIR (build with -sanitize=fuzzer to fuzz)")
        exit(2)
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
if let driver = fuzzerDriver() {
    var argc = CommandLine.argc
    var argv = CommandLine.unsafeArgv
    exit(driver(&argc, &argv, fuzz))
} else {
    replayOrSeed()
}
