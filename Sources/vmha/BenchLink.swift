import Foundation

/// Two network namespaces joined by a veth pair, shaped with tbf on both ends (docs/test-hosts.md,
/// TEST-HOSTS §4): `1g` = `tbf rate 1gbit burst 256kb latency 10ms`, `10g` = `tbf rate 10gbit burst
/// 4mb latency 10ms`, `none` = unshaped. Removed by `BenchCleanup` (deleting a namespace deletes
/// its veth end and with it the pair).
struct BenchLink {
    enum Shape: String, CaseIterable {
        case oneGigabit = "1g", tenGigabit = "10g", none

        var tbf: [String]? {
            switch self {
            case .oneGigabit: ["tbf", "rate", "1gbit", "burst", "256kb", "latency", "10ms"]
            case .tenGigabit: ["tbf", "rate", "10gbit", "burst", "4mb", "latency", "10ms"]
            case .none: nil
            }
        }
    }

    let shape: Shape
    let namespaceA: String
    let namespaceB: String
    let addressA = "192.168.213.1"
    let addressB = "192.168.213.2"

    /// `tag` makes every name unique to this run (interface names: at most 15 bytes).
    init(tag: String, shape: Shape) throws {
        self.shape = shape
        namespaceA = "vmhab-\(tag)-a"
        namespaceB = "vmhab-\(tag)-b"
        let vethA = "vb\(tag)a", vethB = "vb\(tag)b"
        for ns in [namespaceA, namespaceB] {
            try Shell.run(["ip", "netns", "add", ns])
            BenchCleanup.shared.add("netns \(ns)") { _ = try? Shell.run(["ip", "netns", "del", ns]) }
            try Shell.run(["ip", "-n", ns, "link", "set", "lo", "up"])
        }
        try Shell.run(["ip", "link", "add", vethA, "type", "veth", "peer", "name", vethB])
        BenchCleanup.shared.add("veth \(vethA)") { _ = try? Shell.capture(["ip", "link", "del", vethA], timeout: 10) }
        try Shell.run(["ip", "link", "set", vethA, "netns", namespaceA])
        try Shell.run(["ip", "link", "set", vethB, "netns", namespaceB])
        for (ns, dev, address) in [(namespaceA, vethA, addressA), (namespaceB, vethB, addressB)] {
            try Shell.run(["ip", "-n", ns, "addr", "add", "\(address)/24", "dev", dev])
            try Shell.run(["ip", "-n", ns, "link", "set", dev, "up"])
            if let tbf = shape.tbf {
                try Shell.run(["tc", "qdisc", "add", "dev", dev, "root"] + tbf, ns: ns)
            }
        }
        // Both ends up (carrier) before anything is measured; `ping` is not always installed.
        for _ in 0..<250 {
            let a = try Shell.run(["ip", "-n", namespaceA, "link", "show", "dev", vethA])
            let b = try Shell.run(["ip", "-n", namespaceB, "link", "show", "dev", vethB])
            if a.contains("LOWER_UP") && b.contains("LOWER_UP") { return }
            usleep(20_000)
        }
        throw BenchError("veth \(vethA)/\(vethB) did not come up")
    }

    /// One iperf3 TCP stream A → B (server in B, client in A); returns bits per second received.
    func iperf3(seconds: Int, workDirectory: String) throws -> Double {
        let server = try BackgroundProcess(
            "iperf3 server", ["iperf3", "-s", "-1", "-B", addressB, "-p", "5201"], ns: namespaceB,
            logPath: workDirectory + "/iperf3-server.log")
        defer { server.stop(grace: 5) }
        var lastError: (any Error)?
        for _ in 0..<50 {
            do {
                let out = try Shell.run(
                    ["iperf3", "-c", addressB, "-p", "5201", "-t", "\(seconds)", "-O", "1", "-J"], ns: namespaceA,
                    timeout: Double(seconds) + 30)
                guard let json = try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any],
                      let end = json["end"] as? [String: Any], let received = end["sum_received"] as? [String: Any],
                      let bps = received["bits_per_second"] as? Double
                else { throw BenchError("iperf3: no end.sum_received.bits_per_second in its JSON") }
                return bps
            } catch {
                lastError = error  // the server may not listen yet
                usleep(100_000)
            }
        }
        throw lastError ?? BenchError("iperf3 failed")
    }
}
