import Cluster
import Foundation
import Harness
import Sockets
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The real `vmha witness` and its state file, over UDP on loopback: what it persists (the term
/// and the unsynced writer) survives a restart, a file it cannot read is a clear error, and the
/// operator's `--forget-unsynced-writer` is the only way past the record (docs/witness.md).
@Suite("Witness state file", .serialized)
struct WitnessStateTests {
    let directory = "/tmp/vmha-witness-state-\(getpid())"
    let key = Array(repeating: UInt8(0x5a), count: 32)
    var keyFile: String { directory + "/key" }
    var stateFile: String { directory + "/state" }

    init() throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try Data(key).write(to: URL(fileURLWithPath: keyFile))
    }

    /// A running witness, killed when the test is done with it.
    final class RunningWitness {
        let process = Process()
        let address: TCPSocket.Address

        init(port: Int, keyFile: String, stateFile: String, extra: [String] = []) throws {
            address = TCPSocket.Address("127.0.0.1:\(port)")!
            process.executableURL = URL(fileURLWithPath: try builtProduct("vmha"))
            // A short lease: the quiet period after start is one lease plus margin.
            process.arguments = ["witness", "--listen", "127.0.0.1:\(port)", "--key-file", keyFile, "--lease-ms", "300", "--state-file", stateFile] + extra
            let output = Pipe()
            process.standardOutput = output
            process.standardError = FileHandle.nullDevice
            try process.run()
            // Ready when it says so. The requests' deadline must not count the start: on a loaded
            // machine (CI running guests beside it) starting the process took longer than that
            // deadline, and the test failed with "no answer" from a witness not yet listening.
            let reader = output.fileHandleForReading
            var seen = Data()
            while !String(decoding: seen, as: UTF8.self).contains("witness listening") {
                let chunk = reader.availableData
                guard !chunk.isEmpty else { throw HAClusterError("vmha witness exited before listening: \(String(decoding: seen, as: UTF8.self))") }
                seen += chunk
            }
            // Keep draining what it prints, so that it never blocks on a full pipe.
            Thread.detachNewThread { while !reader.availableData.isEmpty {} }
        }

        func stop() {
            process.terminate()
            process.waitUntilExit()
        }
    }

    /// Sends one request until an answer comes (the witness may still be quiet after its start).
    /// On a thread of its own: the blocking receives must not hold one of Swift's pool threads,
    /// and a test starved of pool threads (the other suites' guests and tools) saw its deadline
    /// pass between two tries and failed with "no answer" from a witness that was answering.
    func ask(_ witness: RunningWitness, host: String, id: UInt64, peerInSync: Bool) async throws -> LeaseResponse.Decision {
        let (key, address) = (self.key, witness.address)
        return try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Result { try Self.askBlocking(address, key: key, host: host, id: id, peerInSync: peerInSync) })
            }
        }
    }

    static func askBlocking(_ address: TCPSocket.Address, key: [UInt8], host: String, id: UInt64, peerInSync: Bool) throws -> LeaseResponse.Decision {
        let socket = try UDPSocket(bind: TCPSocket.Address("127.0.0.1:0")!, receiveTimeoutMilliseconds: 100)
        defer { socket.close() }
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            _ = socket.send(WitnessWire.encode(.request(LeaseRequest(host: host, requestID: id, peerInSync: peerInSync)), key: key), to: address)
            if let (bytes, _) = try socket.receive(), case .response(let response)? = WitnessWire.decode(bytes, key: key), response.requestID == id {
                // Quiet after start: ask again (a poll: the quiet period ends by time, with no event to wait on).
                if case .denied(nil, _) = response.decision { usleep(100_000); continue }
                return response.decision
            }
        }
        throw HAClusterError("no answer from the witness at \(address)")
    }

    func port() -> Int { 20_000 + Int(getpid() % 20_000) }

    @Test func anUnreadableStateFileIsOneClearLineAndExit78() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for garbage in ["not a term\n", "12\nhostA\nextra\n", ""] {
            try garbage.write(toFile: stateFile, atomically: true, encoding: .utf8)
            let (status, output) = try HACluster.runTool([
                try builtProduct("vmha"), "witness", "--listen", "127.0.0.1:\(port())", "--key-file", keyFile, "--state-file", stateFile,
            ])
            #expect(status == 78, "\(garbage.debugDescription): \(output)")
            #expect(output.split(separator: "\n").count == 1 && output.contains(stateFile), "\(output)")
            #expect(try String(contentsOfFile: stateFile, encoding: .utf8) == garbage, "the file is left as it was")
        }
    }

    @Test func theUnsyncedWriterSurvivesARestartAndOnlyItsReportClearsIt() async throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try "7\nhostA\n".write(toFile: stateFile, atomically: true, encoding: .utf8)
        var witness = try RunningWitness(port: port(), keyFile: keyFile, stateFile: stateFile)
        // hostA wrote alone before the restart: hostB's copy is outdated, in sync or not.
        #expect(try await ask(witness, host: "hostB", id: 1, peerInSync: true) == .outdated(writer: "hostA"))
        witness.stop()

        witness = try RunningWitness(port: port(), keyFile: keyFile, stateFile: stateFile)
        #expect(try await ask(witness, host: "hostB", id: 2, peerInSync: false) == .outdated(writer: "hostA"))
        // hostA reports hostB in sync: the record goes, durably, with the new term.
        #expect(try await ask(witness, host: "hostA", id: 3, peerInSync: true) == .granted(term: 8, duration: .milliseconds(300), peerOutdated: false))
        #expect(try String(contentsOfFile: stateFile, encoding: .utf8) == "8\n\n")
        witness.stop()

        // hostB writes alone now; an operator gives up on that and lets hostA in.
        try "9\nhostB\n".write(toFile: stateFile, atomically: true, encoding: .utf8)
        witness = try RunningWitness(port: port(), keyFile: keyFile, stateFile: stateFile, extra: ["--forget-unsynced-writer"])
        defer { witness.stop() }
        #expect(try await ask(witness, host: "hostA", id: 4, peerInSync: false) == .granted(term: 10, duration: .milliseconds(300), peerOutdated: true))
        #expect(try String(contentsOfFile: stateFile, encoding: .utf8) == "10\nhostA\n")
    }
}
