import Crypto
import Volume

/// Invariants of the frame decoder and handshake over arbitrary input, shared
/// by the libFuzzer target (`perf/Fuzz/PeerFrameFuzz`) and the property test
/// in `ReplicationTests`, so CI checks the same properties without libFuzzer.
///
/// For any byte stream:
/// 1. decoding never traps, and decoding it in random fragments yields the
///    same frames and the same terminal error as decoding it in one piece;
/// 2. every frame re-encodes to exactly the bytes it was decoded from, and so
///    does every message that ``PeerMessage/init(frame:)`` accepts;
/// 3. the decoder never holds more than one header plus one maximum payload
///    beyond the input it was given;
/// 4. the handshake (both roles) never traps and reacts identically to whole
///    and fragmented input.
public enum PeerStreamInvariants {
    /// Checks every invariant on `input`; returns the violations (empty = fine).
    ///
    /// - Parameter repairHeaders: first rewrite every header-sized window the
    ///   length chain reaches with the right magic and CRC, so random input gets
    ///   past the header checks and exercises the payload decoders.
    public static func violations(in input: [UInt8], fragmentSeed: UInt64, repairHeaders: Bool) -> [String] {
        let bytes = repairHeaders ? repairingHeaders(input) : input
        var problems: [String] = []
        var generator = SplitMix64(seed: fragmentSeed)
        let fragments = fragment(bytes, using: &generator)

        // 1 + 2 + 3: the decoder.
        let whole = decodeAll([bytes])
        let pieces = decodeAll(fragments)
        if whole.frames != pieces.frames || whole.error != pieces.error {
            problems.append("fragmented decoding differs: \(whole.frames.count) frames/\(String(describing: whole.error)) vs \(pieces.frames.count)/\(String(describing: pieces.error))")
        }
        if whole.maximumBuffered > bytes.count {
            problems.append("decoder buffered \(whole.maximumBuffered) bytes of a \(bytes.count)-byte input")
        }
        var offset = 0
        for frame in whole.frames {
            let encoded = frame.encoded
            if offset + encoded.count > bytes.count || Array(bytes[offset..<(offset + encoded.count)]) != encoded {
                problems.append("\(frame.header.type) frame at \(offset) does not re-encode to its input bytes")
                break
            }
            if let message = try? PeerMessage(frame: frame) {
                let again = message.encoded(version: frame.header.version)
                if again != encoded {
                    problems.append("\(frame.header.type) message at \(offset) re-encodes differently")
                }
            }
            offset += encoded.count
        }

        // 4: the handshake, both roles.
        for role in [PeerHandshake.Role.connector, .acceptor] {
            let a = runHandshake(role: role, chunks: [bytes])
            let b = runHandshake(role: role, chunks: fragments)
            if a != b {
                problems.append("\(role) handshake reacts differently to fragmented input")
            }
        }
        return problems
    }

    struct Decoded {
        var frames: [PeerFrame] = []
        var error: PeerProtocolError?
        var maximumBuffered = 0
    }

    static func decodeAll(_ chunks: [[UInt8]]) -> Decoded {
        var decoder = PeerFrameDecoder()
        var result = Decoded()
        outer: for chunk in chunks {
            decoder.receive(chunk)
            result.maximumBuffered = max(result.maximumBuffered, decoder.bufferedByteCount)
            while true {
                do {
                    guard let frame = try decoder.next() else { break }
                    result.frames.append(frame)
                } catch {
                    result.error = error
                    break outer
                }
            }
        }
        return result
    }

    static let fuzzConfiguration = PeerHandshake.Configuration(
        hostName: "fuzz-local", clusterName: "fuzz", clusterKey: SymmetricKey(data: Array(repeating: UInt8(7), count: 32)))

    static func runHandshake(role: PeerHandshake.Role, chunks: [[UInt8]]) -> PeerHandshake.Output {
        var handshake = PeerHandshake(role: role, configuration: fuzzConfiguration,
                                      nonce: Array(repeating: role == .connector ? 1 : 2, count: 32))
        var total = handshake.start()
        for chunk in chunks {
            let out = handshake.receive(chunk)
            total.bytesToSend += out.bytesToSend
            total.events += out.events
        }
        return total
    }

    /// Splits into random pieces (including 1-byte ones) chosen by `generator`.
    static func fragment(_ bytes: [UInt8], using generator: inout SplitMix64) -> [[UInt8]] {
        var pieces: [[UInt8]] = []
        var i = 0
        while i < bytes.count {
            let cap = generator.next() % 2 == 0 ? 4 : 97
            let n = 1 + Int(generator.next() % UInt64(min(bytes.count - i, cap)))
            pieces.append(Array(bytes[i..<(i + n)]))
            i += n
        }
        return pieces
    }

    /// Walks the stream frame by frame (by each header's length field) and
    /// stamps magic, a supported version and a correct CRC into every header.
    /// Type, flags, length and payload stay as the fuzzer made them.
    public static func repairingHeaders(_ input: [UInt8]) -> [UInt8] {
        var bytes = input
        var i = 0
        while bytes.count - i >= PeerProtocol.headerSize {
            bytes.storeBigEndian(PeerProtocol.magic, at: i)
            bytes.storeBigEndian(PeerProtocol.currentVersion, at: i + 4)
            bytes.storeBigEndian(UInt16(0), at: i + 10)
            // Keep lengths near the data actually present so frames complete.
            let length = bytes.withUnsafeBytes { $0.readBigEndian(at: i + 24, as: UInt32.self) }
            let bounded = UInt32(Int(length) % (bytes.count - i - PeerProtocol.headerSize + 1))
            bytes.storeBigEndian(bounded, at: i + 24)
            let crc = CRC32C.checksum(bytes[i..<(i + 28)])
            bytes.storeBigEndian(crc, at: i + 28)
            i += PeerProtocol.headerSize + Int(bounded)
        }
        return bytes
    }
}

/// A small, fast, seedable generator (SplitMix64) so fragmentations are reproducible.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension PeerStreamInvariants {
    /// Valid streams, one per frame type plus a complete handshake transcript,
    /// as a seed corpus: libFuzzer cannot guess a CRC32C, so it starts from these.
    public static func seedStreams() -> [[UInt8]] {
        var seeds: [[UInt8]] = []
        let key = SymmetricKey(data: Array(repeating: UInt8(7), count: 32))
        let peer = PeerHandshake.Configuration(hostName: "fuzz-peer", clusterName: "fuzz", clusterKey: key)
        // What a peer would send to the fuzzed handshake (HELLO, CHALLENGE); the RESPONSE needs
        // the fuzzed side's nonce, fixed in runHandshake, so it is valid for role .acceptor.
        var local = PeerHandshake(role: .acceptor, configuration: fuzzConfiguration, nonce: Array(repeating: 2, count: 32))
        var remote = PeerHandshake(role: .connector, configuration: peer, nonce: Array(repeating: 9, count: 32))
        var transcript = remote.start().bytesToSend
        let localHello = local.start().bytesToSend
        transcript += remote.receive(localHello).bytesToSend
        seeds.append(transcript)
        let nonce = Array(repeating: UInt8(5), count: 32)
        let messages: [any PeerMessageCodable] = [
            PeerHello(versions: 1...1, nonce: nonce, hostName: "h", clusterName: "fuzz"),
            PeerChallenge(version: 1, nonce: nonce), PeerResponse(mac: nonce), PeerWelcome(),
            PeerRefuse(reason: .protocolViolation, message: "x"),
            PeerWrite(volumeID: 1, sequence: 2, offset: 4096, fua: true, data: [1, 2, 3, 4]),
            PeerWriteZeroes(volumeID: 1, sequence: 3, offset: 0, length: 4096, noHole: true),
            PeerTrim(volumeID: 1, sequence: 4, offset: 0, length: 4096), PeerFlush(volumeID: 1, sequence: 5),
            PeerAck(volumeID: 1, sequence: 5, status: 0),
            PeerResyncRequest(volumeID: 1, requestID: 1, offset: 0, length: 4096),
            PeerResyncData(volumeID: 1, requestID: 1, offset: 0, content: .zeroes(length: 4096)),
            PeerResyncData(volumeID: 1, requestID: 1, offset: 0, content: .data([7, 7][...])),
            PeerResyncChecksum(volumeID: 1, requestID: 1, offset: 0, length: 4096, digest: .crc32c(1)),
            PeerResyncDone(volumeID: 1, bytesSynced: 4096),
            PeerBitmap(volumeID: 1, byteOffset: 0, totalLength: 8, chunk: [0, 1, 0, 0, 0, 0, 0, 0][...]),
            PeerPing(token: 1), PeerPong(token: 1), PeerGoodbye(message: "bye"),
            PeerSupportRequest(sinceSeconds: 60), PeerSupportData(byteOffset: 0, totalLength: 2, chunk: [1, 2][...]),
        ]
        for m in messages { seeds.append(m.encoded()) }
        return seeds
    }
}
