import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `vmha bench resync --link none --size 64MiB --json` end to end: two namespaces, two real vmhad,
/// iperf3, fio, rsync. Checks the JSON's shape and that the replicas end identical; the numbers
/// themselves belong to perf/run.
@Suite struct BenchResyncSmokeTests {
    /// vmha and vmhad are built next to the test bundle (`swift test` builds every product).
    static var productsDirectory: URL {
        URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
    }

    static var runnable: Bool {
        let tools = ["iperf3", "fio", "rsync", "openssl", "ip", "tc"]
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "") + ":/usr/sbin:/sbin"
        let found = tools.allSatisfy { tool in
            path.split(separator: ":").contains { FileManager.default.isExecutableFile(atPath: "\($0)/\(tool)") }
        }
        let products = ["vmha", "vmhad"].allSatisfy {
            FileManager.default.isExecutableFile(atPath: productsDirectory.appendingPathComponent($0).path)
        }
        return getuid() == 0 && found && products
    }

    @Test(.enabled(if: runnable, "needs root, iperf3, fio, rsync, openssl, iproute2 and the vmha/vmhad products"),
          .timeLimit(.minutes(2)))
    func smallResyncOverUnshapedVeth() throws {
        let process = Process()
        process.executableURL = Self.productsDirectory.appendingPathComponent("vmha")
        process.arguments = ["bench", "resync", "--link", "none", "--size", "64MiB", "--iperf-seconds", "2", "--json"]
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // Read both pipes while it runs (a full pipe would block it).
        let errData = OutputBox()
        let errReader = Thread { errData.set(err.fileHandleForReading.readDataToEndOfFile()) }
        errReader.start()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        while !errData.done { usleep(10_000) }
        let stderr = String(decoding: errData.value, as: UTF8.self)
        try #require(process.terminationStatus == 0, "vmha bench resync failed:\n\(stderr)")

        let json = try #require(try JSONSerialization.jsonObject(with: outData) as? [String: Any], "stdout is not one JSON object")
        for key in ["link", "image_bytes", "iperf3_bits_per_second", "full_resync_bits_per_second", "full_resync_to_line_ratio",
                    "full_resync_seconds", "incremental_resync_seconds", "incremental_dirty_fraction",
                    "checksum_resync_bytes_sent", "rsync_bits_per_second", "replicas_identical",
                    "disk_copy_bits_per_second", "full_resync_to_disk_ratio", "nbdcopy_bits_per_second"] {
            #expect(json[key] != nil, "missing \(key)")
        }
        #expect(json["link"] as? String == "none")
        #expect((json["image_bytes"] as? NSNumber)?.uint64Value == 64 << 20)
        #expect(json["replicas_identical"] as? Bool == true, "\(stderr)")
        #expect(((json["nbdcopy_bits_per_second"] as? NSNumber)?.doubleValue ?? 0) > 0, "the nbdcopy → qemu-nbd baseline ran")
        let full = try #require((json["full_resync_seconds"] as? NSNumber)?.doubleValue)
        let incremental = try #require((json["incremental_resync_seconds"] as? NSNumber)?.doubleValue)
        #expect(incremental < full, "incremental \(incremental) s, full \(full) s")
        let disk = try #require((json["disk_copy_bits_per_second"] as? NSNumber)?.doubleValue)
        #expect(disk > 0)
        let fraction = try #require((json["incremental_dirty_fraction"] as? NSNumber)?.doubleValue)
        #expect(fraction > 0 && fraction < 0.05)
        #expect((json["iperf3_bits_per_second"] as? NSNumber)?.doubleValue ?? 0 > 0)
        // Identical images: only digests (and at most a few blocks) cross the link.
        let checksumSent = try #require((json["checksum_resync_bytes_sent"] as? NSNumber)?.uint64Value)
        #expect(checksumSent < 1 << 20, "\(checksumSent) bytes sent to checksum-resync identical 64 MiB images")
    }

    /// A tiny one-shot box for the stderr reader thread.
    final class OutputBox: @unchecked Sendable {
        private let lock = NSLock()
        private var data = Data()
        private var finished = false
        func set(_ d: Data) { lock.lock(); data = d; finished = true; lock.unlock() }
        var done: Bool { lock.lock(); defer { lock.unlock() }; return finished }
        var value: Data { lock.lock(); defer { lock.unlock() }; return data }
    }
}
