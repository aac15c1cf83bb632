import ArgumentParser
import Cluster
import Foundation
import Sockets
import SystemCalls

#if canImport(Glibc)
import Glibc
#endif

/// `vmha witness`: the tie-breaker on a third machine. Grants the vote (`WitnessLease`) to one
/// host at a time over authenticated UDP (`WitnessWire`). Keeps its highest term in --state-file
/// so terms never repeat across restarts, and with it the host that held the vote without its
/// peer in sync (whose peer gets no vote until it is in sync again); the file is written before
/// the grant leaves. After a start it grants nothing for one lease + margin.
struct Witness: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the witness service that grants the failover vote.")

    @Option(help: "ADDRESS:PORT to listen on (UDP).") var listen: String
    @Option(help: "The cluster key file (the hosts' cluster.key_file).") var keyFile: String
    @Option(help: "Lease duration in ms (the cluster's timeouts.witness_lease_ms).") var leaseMs: Int = 4000
    @Option(help: "Clock drift bound in ppm (timeouts.max_clock_drift_ppm).") var driftPpm: Int = 1000
    @Option(help: "Where the highest granted term and the unsynced writer are kept.") var stateFile: String?
    @Flag(help: "Forget the persisted unsynced writer: lets its peer take over on older data (an operator's decision, when that host is gone for good).")
    var forgetUnsyncedWriter = false

    /// The state file: the term on the first line, the unsynced writer (if any) on the second.
    struct State: Equatable {
        var term: UInt64 = 0
        var unsyncedWriter: String?

        init(term: UInt64 = 0, unsyncedWriter: String? = nil) {
            self.term = term
            self.unsyncedWriter = unsyncedWriter
        }

        init?(parsing text: String) {
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard let first = lines.first, let term = UInt64(first) else { return nil }
            let writer = lines.count > 1 ? lines[1] : ""
            guard lines.dropFirst(2).allSatisfy(\.isEmpty) else { return nil }
            self.init(term: term, unsyncedWriter: writer.isEmpty ? nil : writer)
        }

        var text: String { "\(term)\n\(unsyncedWriter ?? "")\n" }
    }

    func run() throws {
        guard let address = TCPSocket.Address(listen) else {
            FileHandle.standardError.write(Data("vmha witness: --listen \(listen) is not ADDRESS:PORT\n".utf8))
            throw ExitCode(78)
        }
        guard let key = FileManager.default.contents(atPath: keyFile), key.count >= 16 else {
            FileHandle.standardError.write(Data("vmha witness: --key-file \(keyFile): cannot read a key of at least 16 bytes\n".utf8))
            throw ExitCode(78)
        }
        let socket = try UDPSocket(bind: address, receiveTimeoutMilliseconds: 500)
        let timing = LeaseTiming(leaseDuration: .milliseconds(leaseMs), maxDriftPPM: driftPpm, suspendLatency: .zero, renewInterval: .milliseconds(100))
        var persisted = State()
        if let stateFile, FileManager.default.fileExists(atPath: stateFile) {
            guard let text = try? String(contentsOfFile: stateFile, encoding: .utf8), let state = State(parsing: text) else {
                FileHandle.standardError.write(
                    Data("vmha witness: --state-file \(stateFile): not a term line and an optional host line; fix or remove it (removing it forgets which host's copy is outdated)\n".utf8))
                throw ExitCode(78)
            }
            persisted = state
        }
        if forgetUnsyncedWriter, let writer = persisted.unsyncedWriter {
            print("forgetting that \(writer) may have written without its peer: its peer may now get the vote on older data")
            persisted.unsyncedWriter = nil
        }
        var lease = WitnessLease(timing: timing, startedAt: now(), lastTerm: persisted.term, unsyncedWriter: persisted.unsyncedWriter)
        if let writer = persisted.unsyncedWriter { print("\(writer) may have written without its peer: only \(writer) gets the vote until it reports its peer in sync") }
        print("witness listening on \(address) (lease \(leaseMs) ms, quiet until one lease has passed)")
        fflush(nil)
        while true {
            guard let (bytes, from) = try socket.receive() else { continue }
            switch WitnessWire.decode(Array(bytes), key: Array(key)) {
            case .request(let request)?:
                let previous = lease.grant
                let previousWriter = lease.unsyncedWriter
                let response = lease.handle(request, at: now())
                let state = State(term: lease.lastTerm, unsyncedWriter: lease.unsyncedWriter)
                if let stateFile, state != persisted {
                    // Durable before the answer: a grant whose record is lost could let the peer in later.
                    do {
                        try state.text.write(toFile: stateFile, atomically: true, encoding: .utf8)
                        persisted = state
                    } catch {
                        FileHandle.standardError.write(Data("vmha witness: cannot write --state-file \(stateFile): \(error); not answering\n".utf8))
                        continue
                    }
                }
                if case .granted(let term, _, _) = response.decision, previous?.term != term {
                    print("granted term \(term) to \(request.host)")
                }
                if lease.unsyncedWriter != previousWriter {
                    print(lease.unsyncedWriter.map { "\($0) may write without its peer: its peer's copy is outdated" } ?? "\(previousWriter!) reports its peer in sync")
                }
                fflush(nil)
                socket.send(WitnessWire.encode(.response(response), key: Array(key)), to: from)
            case .release(let host, let term)?:
                lease.release(by: host, term: term)
                print("released term \(term) by \(host)"); fflush(nil)
            default:
                continue
            }
        }
    }

    func now() -> MonotonicInstant { MonotonicInstant(nanoseconds: MonotonicClock.nanoseconds()) }
}
