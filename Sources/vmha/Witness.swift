import ArgumentParser
import Cluster
import Foundation
import Uring

#if canImport(Glibc)
import Glibc
#endif

/// `vmha witness`: the tie-breaker on a third machine. Grants the vote (`WitnessLease`) to one
/// host at a time over authenticated UDP (`WitnessWire`). Keeps its highest term in --state-file
/// so terms never repeat across restarts; after a start it grants nothing for one lease + margin.
struct Witness: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the witness service that grants the failover vote.")

    @Option(help: "ADDRESS:PORT to listen on (UDP).") var listen: String
    @Option(help: "The cluster key file (the hosts' cluster.key_file).") var keyFile: String
    @Option(help: "Lease duration in ms (the cluster's timeouts.witness_lease_ms).") var leaseMs: Int = 4000
    @Option(help: "Clock drift bound in ppm (timeouts.max_clock_drift_ppm).") var driftPpm: Int = 1000
    @Option(help: "Where the highest granted term is kept.") var stateFile: String?

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
        let lastTerm = stateFile.flatMap { try? String(contentsOfFile: $0, encoding: .utf8) }.flatMap { UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
        var lease = WitnessLease(timing: timing, startedAt: now(), lastTerm: lastTerm)
        var persistedTerm = lastTerm
        print("witness listening on \(address) (lease \(leaseMs) ms, quiet until one lease has passed)")
        fflush(nil)
        while true {
            guard let (bytes, from) = try socket.receive() else { continue }
            switch WitnessWire.decode(Array(bytes), key: Array(key)) {
            case .request(let request)?:
                let previous = lease.grant
                let response = lease.handle(request, at: now())
                if case .granted(let term, _) = response.decision {
                    if let stateFile, term > persistedTerm {
                        try? "\(term)\n".write(toFile: stateFile, atomically: true, encoding: .utf8)
                        persistedTerm = term
                    }
                    if previous?.term != term { print("granted term \(term) to \(request.host)"); fflush(nil) }
                }
                socket.send(WitnessWire.encode(.response(response), key: Array(key)), to: from)
            case .release(let host, let term)?:
                lease.release(by: host, term: term)
                print("released term \(term) by \(host)"); fflush(nil)
            default:
                continue
            }
        }
    }

    func now() -> MonotonicInstant {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return MonotonicInstant(nanoseconds: Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec))
    }
}
