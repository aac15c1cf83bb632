import ArgumentParser
import Foundation
import SystemCalls

#if canImport(Glibc)
import Glibc
#endif

/// `vmha bench`: measurements that compare vmha with a baseline taken in the same run.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks, each against a baseline measured in the same run.",
        subcommands: [BenchResync.self])
}

/// `vmha bench resync`: full and incremental resync between two vmhad over a (shaped) veth link,
/// against iperf3 (line rate) and rsync on the same link. Needs root (network namespaces).
struct BenchResync: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resync",
        abstract: "Measure vmhad's full and incremental resync against iperf3 and rsync on the same link.",
        discussion: """
            Creates two network namespaces joined by a veth pair (shaped with tbf on both ends for 1g and
            10g), a primary vmhad (--export, --replicate-to) in one and a secondary (--replica, --listen)
            in the other, and measures in one run: iperf3's line rate A→B; a full resync of an image of
            random data to a fresh (sparse, no metadata) secondary; an incremental resync after 1 % of
            the 64 KiB blocks were rewritten through the primary's NBD export (fio) while the secondary
            was down; the disk's copy rate (fio reading the image while writing a fresh file of the
            same size, O_DIRECT: both hosts share this machine's disk, so no resync can be faster);
            `rsync --inplace` of the same image to an rsync daemon in the other namespace; and
            whether both replicas hash the same (sha256) after each resync. Resync times are the
            primary's own (its `resync finished seconds=` log line). Everything created is removed on
            exit, also on SIGINT/SIGTERM (--keep keeps the work directory with images and logs).
            The vmhad used is the one next to this vmha binary: build with `swift build -c release`.
            """)

    @Option(help: "Link between the hosts: 1g, 10g (tbf-shaped veth) or none (unshaped veth).")
    var link: String

    @Option(help: "Image size, e.g. 4GiB, 64MiB (default 4GiB).")
    var size: String = "4GiB"

    @Option(help: "Fraction of the 64 KiB blocks rewritten before the incremental resync.")
    var dirtyFraction: Double = 0.01

    @Option(help: "Seconds of iperf3.")
    var iperfSeconds: Int = 5

    @Flag(help: "Skip the rsync baseline.")
    var noRsync = false

    @Flag(help: "Print exactly one JSON object (and nothing else) on stdout.")
    var json = false

    @Flag(help: "Keep the work directory (images, logs) for inspection.")
    var keep = false

    @Option(help: "Directory for the work directory (it needs 2–3 × --size of free space).")
    var directory: String = "/var/tmp"

    @Option(help: "Passed to both vmhad as --al-extents (diagnosis; default: vmhad's).")
    var alExtents: Int?

    @Option(help: "Seconds to wait for one resync before giving up (default: 300 + 1 s per 20 MB).")
    var resyncTimeout: Double?

    @Option(help: "Put both vmhad metadata files here instead (diagnosis: e.g. /dev/shm shows what durable metadata writes cost).")
    var metadataDirectory: String?

    static let blockSize: UInt64 = 64 << 10

    func validate() throws {
        guard BenchLink.Shape(rawValue: link) != nil else { throw ValidationError("--link must be 1g, 10g or none") }
        guard let bytes = parseByteCount(size), bytes >= 1 << 20, bytes % Self.blockSize == 0 else {
            throw ValidationError("--size \(size): need a multiple of 64 KiB, at least 1 MiB (e.g. 64MiB, 4GiB)")
        }
        guard dirtyFraction > 0, dirtyFraction <= 1 else { throw ValidationError("--dirty-fraction must be in (0, 1]") }
    }

    func run() throws {
        guard getuid() == 0 else { throw ValidationError("vmha bench resync needs root (network namespaces, tc)") }
        let cleanup = BenchCleanup.shared
        cleanup.installSignalHandlers()
        defer { cleanup.runAll() }
        do {
            let result = try measure()
            if json {
                let data = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
                print(String(decoding: data, as: UTF8.self))
            } else {
                printTable(result)
            }
        } catch {
            FileHandle.standardError.write("vmha bench resync: \(error)\n".data(using: .utf8)!)
            throw ExitCode.failure
        }
    }

    private func progress(_ message: String) {
        FileHandle.standardError.write("bench resync: \(message)\n".data(using: .utf8)!)
    }

    private func measure() throws -> [String: Any] {
        let shape = BenchLink.Shape(rawValue: link)!
        let imageBytes = parseByteCount(size)!
        let cleanup = BenchCleanup.shared
        let vmhad = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
            .appendingPathComponent("vmhad").path
        guard FileManager.default.isExecutableFile(atPath: vmhad) else {
            throw BenchError("no vmhad next to vmha (\(vmhad)): swift build -c release")
        }
        for tool in ["ip", "tc", "iperf3", "fio", "openssl", "sha256sum"] + (noRsync ? [] : ["rsync"]) where Shell.resolve(tool) == nil {
            throw BenchError("\(tool) not found: scripts/install-deps")
        }
        let tag = String(format: "%05x", getpid() & 0xFFFFF) + String(format: "%02x", UInt8.random(in: 0...255))
        let work = "\(directory)/vmha-bench-resync-\(tag)"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: false)
        let keep = self.keep
        cleanup.add("work directory") {
            if keep {
                FileHandle.standardError.write("bench resync: kept \(work)\n".data(using: .utf8)!)
            } else {
                try? FileManager.default.removeItem(atPath: work)
            }
        }
        var result: [String: Any] = [
            "link": shape.rawValue, "image_bytes": Int(imageBytes), "vmhad": vmhad, "block_bytes": Int(Self.blockSize),
            "tbf": orNull(shape.tbf?.joined(separator: " ")),
        ]

        progress("link \(shape.rawValue): namespaces and veth")
        let net = try BenchLink(tag: tag, shape: shape)
        progress("iperf3 \(iperfSeconds) s")
        let line = try net.iperf3(seconds: iperfSeconds, workDirectory: work)
        result["iperf3_bits_per_second"] = line

        // Images: random data (holes would travel as a marker), written once and synced so that
        // vmhad's O_DIRECT reads do not first have to flush dirty page-cache pages.
        let imageA = work + "/primary.img", imageB = work + "/secondary.img"
        let metaDirectory = metadataDirectory.map { "\($0)/vmha-bench-resync-\(tag)" } ?? work
        if metaDirectory != work {
            try FileManager.default.createDirectory(atPath: metaDirectory, withIntermediateDirectories: false)
            cleanup.add("metadata directory") { try? FileManager.default.removeItem(atPath: metaDirectory) }
            result["metadata_directory"] = metadataDirectory!
        }
        let metaA = metaDirectory + "/primary.vmha", metaB = metaDirectory + "/secondary.vmha"
        let socket = work + "/primary.sock", keyFile = work + "/cluster.key"
        progress("creating \(imageBytes >> 20) MiB of random data")
        let key = (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        try Shell.sh(
            "openssl enc -aes-128-ctr -K \(key) -iv 00000000000000000000000000000000 -in /dev/zero 2>/dev/null | head -c \(imageBytes) > '\(imageA)' && sync '\(imageA)'")
        try Shell.run(["truncate", "-s", "\(imageBytes)", imageB])
        guard (try FileManager.default.attributesOfItem(atPath: imageA)[.size] as? UInt64) == imageBytes else {
            throw BenchError("creating \(imageA) with openssl failed")
        }
        let disk = try diskCopyRate(image: imageA, bytes: imageBytes, work: work)
        result["disk_copy_bits_per_second"] = disk
        result["full_resync_to_disk_ratio"] = NSNull()
        try Data((0..<32).map { _ in UInt8.random(in: 0...255) }).write(to: URL(fileURLWithPath: keyFile))
        let listen = "\(net.addressB):7789"
        var instance = 0
        let extra = alExtents.map { ["--al-extents", "\($0)"] } ?? []
        func startSecondary() throws -> BackgroundProcess {
            instance += 1
            return try BackgroundProcess(
                "secondary vmhad",
                [vmhad, "--replica", "disk0:\(imageB):\(metaB)", "--listen", listen, "--key-file", keyFile,
                 "--host-name", "bench-b", "--cluster-name", "bench-\(tag)"] + extra,
                ns: net.namespaceB, logPath: "\(work)/secondary-\(instance).log")
        }
        func startPrimary(_ options: [String] = []) throws -> BackgroundProcess {
            instance += 1
            return try BackgroundProcess(
                "primary vmhad",
                [vmhad, "--export", "disk0:\(imageA):\(socket):\(metaA)", "--replicate-to", listen, "--key-file", keyFile,
                 "--host-name", "bench-a", "--cluster-name", "bench-\(tag)", "--socket-mode", "600"] + extra + options,
                ns: net.namespaceA, logPath: "\(work)/primary-\(instance).log")
        }
        let timeout = resyncTimeout ?? (300 + Double(imageBytes) / 20e6)
        func count(_ text: String, in log: String) -> Int { log.components(separatedBy: text).count - 1 }
        /// Waits for the primary's next `resync started`/`resync finished` pair (past `done` earlier
        /// ones in this log); returns its fields and both sides' CPU seconds during it.
        func waitForResync(primary: BackgroundProcess, secondary: BackgroundProcess, done: Int = 0) throws -> (seconds: Double, bytes: UInt64, sent: UInt64, cpuPrimary: Double?, cpuSecondary: Double?) {
            _ = try primary.waitForLog("resync started", timeout: timeout) { count("resync started", in: $0) > done }
            let cpuA0 = primary.cpuSeconds, cpuB0 = secondary.cpuSeconds
            let log = try primary.waitForLog("resync finished", timeout: timeout) { count("resync finished", in: $0) > done }
            let cpuA1 = primary.cpuSeconds, cpuB1 = secondary.cpuSeconds
            let finished = log.split(separator: "\n").filter { $0.contains("resync finished") }
            guard finished.count > done, case let lineText = finished[done],
                  let seconds = logField("seconds", in: lineText).flatMap(Double.init),
                  let bytes = logField("bytes", in: lineText).flatMap(UInt64.init),
                  let sent = logField("sent", in: lineText).flatMap(UInt64.init)
            else { throw BenchError("cannot read seconds/bytes/sent from the primary's `resync finished` line:\n\(log.suffix(2000))") }
            let a = cpuA0.flatMap { a0 in cpuA1.map { $0 - a0 } }, b = cpuB0.flatMap { b0 in cpuB1.map { $0 - b0 } }
            return (seconds, bytes, sent, a, b)
        }
        /// Stops both (SIGTERM: files closed) and compares the images' sha256.
        func stopAndCompare(_ processes: [BackgroundProcess]) throws -> Bool {
            for p in processes {
                let status = p.stop()
                if status != 0 { progress("warning: \(p.name) exited with \(status) (log \(p.logPath))") }
            }
            let out = try Shell.sh("sha256sum '\(imageA)' > '\(work)/a.sum' & sha256sum '\(imageB)' > '\(work)/b.sum'; wait; cat '\(work)/a.sum' '\(work)/b.sum'")
            let sums = out.split(separator: "\n").map { $0.split(separator: " ").first.map(String.init) ?? "" }
            guard sums.count == 2, sums[0].count == 64 else { throw BenchError("sha256sum: unexpected output \(out)") }
            return sums[0] == sums[1]
        }

        // (b) Full resync: a fresh secondary (sparse image, no metadata) is synced entirely.
        progress("full resync of \(imageBytes >> 20) MiB")
        var secondary = try startSecondary()
        var primary = try startPrimary()
        let full = try waitForResync(primary: primary, secondary: secondary)
        let fullBitsPerSecond = Double(full.bytes) * 8 / full.seconds
        result["full_resync_seconds"] = full.seconds
        result["full_resync_bytes"] = Int(full.bytes)
        result["full_resync_bytes_sent"] = Int(full.sent)
        result["full_resync_bits_per_second"] = fullBitsPerSecond
        result["full_resync_to_line_ratio"] = fullBitsPerSecond / line
        result["full_resync_to_disk_ratio"] = fullBitsPerSecond / disk
        result["full_resync_primary_cpu_seconds"] = orNull(full.cpuPrimary)
        result["full_resync_secondary_cpu_seconds"] = orNull(full.cpuSecondary)
        progress("full resync: \(String(format: "%.2f", full.seconds)) s; comparing replicas")
        let identicalAfterFull = try stopAndCompare([primary, secondary])
        result["replicas_identical_after_full"] = identicalAfterFull

        // (c) Incremental: both back and connected (in sync), then the secondary goes away, the guest
        // rewrites 1 % of the blocks through the primary's export, and the secondary returns.
        progress("incremental: reconnect, stop the secondary, rewrite \(dirtyFraction * 100) % of the blocks")
        secondary = try startSecondary()
        primary = try startPrimary()
        _ = try primary.waitForLog("replication connected", timeout: 60) { $0.contains("replication connected") }
        usleep(500_000)
        // After a clean stop of both the primary still runs an (empty) incremental resync: let it end.
        if primary.log.contains("resync started") {
            _ = try waitForResync(primary: primary, secondary: secondary)
        }
        let resyncsBefore = count("resync finished", in: primary.log)
        let warningsBefore = primary.log.components(separatedBy: "replication:").count
        secondary.stop()
        _ = try primary.waitForLog("link loss", timeout: 60) { $0.components(separatedBy: "replication:").count > warningsBefore }
        let blocks = imageBytes / Self.blockSize
        let dirtyBlocks = max(1, UInt64((Double(blocks) * dirtyFraction).rounded(.up)))
        _ = try primary.waitForLog("NBD socket", timeout: 30) { _ in FileManager.default.fileExists(atPath: socket) }
        try Shell.run(
            ["fio", "--name=dirty", "--ioengine=nbd", "--uri=nbd+unix:///disk0?socket=\(socket)", "--rw=randwrite",
             "--bs=\(Self.blockSize)", "--size=\(imageBytes)", "--io_size=\(dirtyBlocks * Self.blockSize)", "--iodepth=16",
             "--randrepeat=0", "--refill_buffers", "--output-format=terse"], timeout: timeout)
        secondary = try startSecondary()
        let incremental = try waitForResync(primary: primary, secondary: secondary, done: resyncsBefore)
        result["incremental_resync_seconds"] = incremental.seconds
        result["incremental_resync_bytes"] = Int(incremental.bytes)
        result["incremental_resync_bytes_sent"] = Int(incremental.sent)
        result["incremental_dirty_fraction"] = Double(incremental.bytes) / Double(imageBytes)
        result["incremental_rewritten_fraction"] = Double(dirtyBlocks) / Double(blocks)
        result["incremental_to_full_ratio"] = incremental.seconds / full.seconds
        progress("incremental resync: \(String(format: "%.3f", incremental.seconds)) s; comparing replicas")
        let identicalAfterIncremental = try stopAndCompare([primary, secondary])
        result["replicas_identical_after_incremental"] = identicalAfterIncremental
        result["replicas_identical"] = identicalAfterFull && identicalAfterIncremental

        // (d) Checksum resync of identical images: both replicas start over without metadata (a full
        // sync), with SHA-256 digests first; only blocks that differ would cross the link.
        progress("checksum resync of the two (identical) images")
        try? FileManager.default.removeItem(atPath: metaA)
        try? FileManager.default.removeItem(atPath: metaB)
        secondary = try startSecondary()
        primary = try startPrimary(["--checksum-resync"])
        let checksum = try waitForResync(primary: primary, secondary: secondary)
        result["checksum_resync_bytes_sent"] = Int(checksum.sent)
        result["checksum_resync_seconds"] = checksum.seconds
        let identicalAfterChecksum = try stopAndCompare([primary, secondary])
        result["replicas_identical_after_checksum"] = identicalAfterChecksum
        result["replicas_identical"] = identicalAfterFull && identicalAfterIncremental && identicalAfterChecksum

        // (e) rsync --inplace of the same image over the same link, to an rsync daemon in B.
        if noRsync {
            result["rsync_bits_per_second"] = NSNull()
        } else {
            progress("rsync --inplace of \(imageBytes >> 20) MiB")
            let module = work + "/rsync"
            try FileManager.default.createDirectory(atPath: module, withIntermediateDirectories: false)
            let config = work + "/rsyncd.conf"
            try """
                use chroot = false
                pid file = \(work)/rsyncd.pid
                [bench]
                  path = \(module)
                  read only = false
                  uid = root
                  gid = root

                """.write(toFile: config, atomically: true, encoding: .utf8)
            let daemon = try BackgroundProcess(
                "rsync daemon", ["rsync", "--daemon", "--no-detach", "--config=\(config)", "--address=\(net.addressB)", "--port=8873"],
                ns: net.namespaceB, logPath: work + "/rsyncd.log")
            defer { daemon.stop(grace: 5) }
            var seconds: Double?
            var lastError: (any Error)?
            for _ in 0..<50 where seconds == nil {
                let start = Date()
                do {
                    try Shell.run(["rsync", "--inplace", imageA, "rsync://\(net.addressB):8873/bench/"], ns: net.namespaceA, timeout: timeout)
                    seconds = Date().timeIntervalSince(start)
                } catch {
                    lastError = error  // the daemon may not listen yet
                    usleep(100_000)
                }
            }
            guard let seconds else { throw lastError ?? BenchError("rsync failed") }
            result["rsync_seconds"] = seconds
            result["rsync_bits_per_second"] = Double(imageBytes) * 8 / seconds
            result["rsync_to_line_ratio"] = Double(imageBytes) * 8 / seconds / line
        }

        // (f) nbdcopy of the same image into qemu-nbd over the same link: the best general-purpose
        // NBD copier (libnbd, multi-connection, skips zeroes) to the reference NBD server.
        if Shell.resolve("nbdcopy") == nil || Shell.resolve("qemu-nbd") == nil {
            result["nbdcopy_bits_per_second"] = NSNull()
        } else {
            progress("nbdcopy → qemu-nbd of \(imageBytes >> 20) MiB")
            let target = work + "/nbdcopy-target.img"
            try Shell.run(["truncate", "-s", "\(imageBytes)", target])
            let server = try BackgroundProcess(
                "qemu-nbd", ["qemu-nbd", "--format=raw", "--cache=none", "--aio=io_uring", "--shared=8", "--persistent",
                             "--bind=\(net.addressB)", "--port=10809", target],
                ns: net.namespaceB, logPath: work + "/qemu-nbd.log")
            defer {
                server.stop(grace: 5)
                try? FileManager.default.removeItem(atPath: target)
            }
            var seconds: Double?
            var lastError: (any Error)?
            for _ in 0..<50 where seconds == nil {
                let start = Date()
                do {
                    try Shell.run(["nbdcopy", "--", imageA, "nbd://\(net.addressB):10809"], ns: net.namespaceA, timeout: timeout)
                    seconds = Date().timeIntervalSince(start)
                } catch {
                    lastError = error  // qemu-nbd may not listen yet
                    usleep(100_000)
                }
            }
            guard let seconds else { throw lastError ?? BenchError("nbdcopy failed") }
            result["nbdcopy_seconds"] = seconds
            result["nbdcopy_bits_per_second"] = Double(imageBytes) * 8 / seconds
            result["nbdcopy_to_line_ratio"] = Double(imageBytes) * 8 / seconds / line
        }
        return result
    }

    /// Both "hosts" keep their image on this machine's one disk, so a resync moves at most what the
    /// disk reads from one file while it writes another: fio reading the primary's image and
    /// writing a fresh sparse file of the same size at once (O_DIRECT, 4 MiB blocks, as vmhad does).
    /// Bits per second of the slower of the two.
    private func diskCopyRate(image: String, bytes: UInt64, work: String) throws -> Double {
        progress("disk copy rate: fio read ∥ write, O_DIRECT, \(bytes >> 20) MiB")
        let scratch = work + "/disk-baseline.img"
        try Shell.run(["truncate", "-s", "\(bytes)", scratch])
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let out = try Shell.run(
            ["fio", "--output-format=json", "--ioengine=io_uring", "--direct=1", "--bs=4M", "--iodepth=4", "--size=\(bytes)",
             "--name=read", "--rw=read", "--filename=\(image)", "--name=write", "--rw=write", "--filename=\(scratch)"],
            timeout: 300 + Double(bytes) / 20e6)
        guard let start = out.firstIndex(of: "{"),
              let json = try JSONSerialization.jsonObject(with: Data(out[start...].utf8)) as? [String: Any],
              let jobs = json["jobs"] as? [[String: Any]], jobs.count == 2
        else { throw BenchError("fio: unexpected output \(out.prefix(500))") }
        let milliseconds = jobs.compactMap { ($0["job_runtime"] as? NSNumber)?.doubleValue }.max() ?? 0
        guard milliseconds > 0 else { throw BenchError("fio: no job_runtime in \(out.prefix(500))") }
        return Double(bytes) * 8 / (milliseconds / 1000)
    }

    private func printTable(_ r: [String: Any]) {
        func num(_ key: String) -> Double? { (r[key] as? NSNumber)?.doubleValue }
        func gbit(_ key: String) -> String { num(key).map { String(format: "%.3f Gbit/s", $0 / 1e9) } ?? "n/a" }
        func secs(_ key: String) -> String { num(key).map { String(format: "%.3f s", $0) } ?? "n/a" }
        func ratio(_ key: String) -> String { num(key).map { String(format: "%.3f", $0) } ?? "n/a" }
        let rows: [(String, String)] = [
            ("link", "\(r["link"] ?? "")\((r["tbf"] as? String).map { " (\($0), both ends)" } ?? " (unshaped veth)")"),
            ("image", "\(((r["image_bytes"] as? Int) ?? 0) >> 20) MiB of random data"),
            ("iperf3 A→B", gbit("iperf3_bits_per_second")),
            ("full resync", "\(secs("full_resync_seconds")), \(gbit("full_resync_bits_per_second"))"),
            ("  ÷ iperf3", ratio("full_resync_to_line_ratio")),
            ("disk copy (fio read ∥ write)", gbit("disk_copy_bits_per_second")),
            ("  full resync ÷ disk copy", ratio("full_resync_to_disk_ratio")),
            ("  CPU s primary / secondary", "\(secs("full_resync_primary_cpu_seconds")) / \(secs("full_resync_secondary_cpu_seconds"))"),
            ("incremental resync", "\(secs("incremental_resync_seconds")) for \(String(format: "%.2f", (num("incremental_dirty_fraction") ?? 0) * 100)) % of the image"),
            ("  ÷ full resync time", ratio("incremental_to_full_ratio")),
            ("checksum resync (identical images)", "\((r["checksum_resync_bytes_sent"] as? Int).map { "\($0) bytes sent" } ?? "n/a") in \(secs("checksum_resync_seconds"))"),
            ("rsync --inplace", "\(secs("rsync_seconds")), \(gbit("rsync_bits_per_second"))"),
            ("nbdcopy → qemu-nbd", "\(secs("nbdcopy_seconds")), \(gbit("nbdcopy_bits_per_second"))"),
            ("replicas identical (sha256)", "\(r["replicas_identical"] ?? "?") (after full: \(r["replicas_identical_after_full"] ?? "?"), after incremental: \(r["replicas_identical_after_incremental"] ?? "?"))"),
        ]
        let width = rows.map(\.0.count).max() ?? 0
        for (k, v) in rows { print(k.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + v) }
    }
}

/// A JSON value or null.
func orNull<T>(_ value: T?) -> Any { value.map { $0 as Any } ?? NSNull() }
