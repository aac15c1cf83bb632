import Foundation
import Logging

/// A tiny bootable test guest: a Debian cloud kernel and a busybox initramfs with the virtio
/// modules and ``GuestInit`` as `/init`. Boots in a few seconds under TCG.
///
/// Built once and cached under `cacheDirectory/<kernel version>-<init hash>/`.
public struct TestGuest: Sendable {
    public let kernel: String
    public let initrd: String
    public let kernelVersion: String

    /// `VMHA_GUEST_CACHE` or `/var/cache/vmha-guest`.
    public static var defaultCacheDirectory: String {
        ProcessInfo.processInfo.environment["VMHA_GUEST_CACHE"] ?? "/var/cache/vmha-guest"
    }

    /// Returns the cached guest, building it if needed (downloads the kernel .deb with apt-get).
    public static func prepare(cacheDirectory: String = defaultCacheDirectory, logger: Logger) throws -> TestGuest {
        let fm = FileManager.default
        try fm.createDirectory(atPath: cacheDirectory, withIntermediateDirectories: true)
        let version = try currentCloudKernelVersion()
        let dir = "\(cacheDirectory)/\(version)-\(fnv1a(GuestInit.script))"
        let guest = TestGuest(kernel: "\(dir)/vmlinuz", initrd: "\(dir)/initrd.gz", kernelVersion: version)
        if fm.fileExists(atPath: guest.initrd) && fm.fileExists(atPath: guest.kernel) {
            return guest
        }
        logger.info("building test guest", metadata: ["kernel": "\(version)", "dir": "\(dir)"])
        let work = "\(dir).build-\(getpid())"
        try? fm.removeItem(atPath: work)
        defer { try? fm.removeItem(atPath: work) }
        let root = "\(work)/root"
        for sub in ["bin", "dev", "proc", "sys", "tmp", "etc", "lib/modules"] {
            try fm.createDirectory(atPath: "\(root)/\(sub)", withIntermediateDirectories: true)
        }
        let kdir = try unpackedKernel(version: version, cacheDirectory: cacheDirectory)
        let modules = "\(kdir)/lib/modules/\(version)/kernel"
        for module in GuestInit.modules {
            guard let path = try findFile(named: "\(module).ko", under: modules) else {
                throw ShellError(command: ["find", modules, "\(module).ko"], status: 1, stderr: "module not found", stdout: "")
            }
            try fm.copyItem(atPath: path, toPath: "\(root)/lib/modules/\(module).ko")
        }
        try fm.copyItem(atPath: "/bin/busybox", toPath: "\(root)/bin/busybox")
        try GuestInit.script.write(toFile: "\(root)/init", atomically: true, encoding: .utf8)
        try fm.setAttributes([.posixPermissions: 0o755], ofItemAtPath: "\(root)/init")
        try Shell.run(["sh", "-c", "cd \"$1\" && find . | cpio -o -H newc --quiet | gzip -6 > \"$2\"",
                       "sh", root, "\(work)/initrd.gz"])
        try fm.copyItem(atPath: "\(kdir)/boot/vmlinuz-\(version)", toPath: "\(work)/vmlinuz")
        // QEMU runs as libvirt-qemu: the files and their directories must be readable by it.
        for f in ["initrd.gz", "vmlinuz"] {
            try fm.setAttributes([.posixPermissions: 0o644], ofItemAtPath: "\(work)/\(f)")
        }
        try fm.setAttributes([.posixPermissions: 0o755], ofItemAtPath: work)
        try fm.removeItem(atPath: root)
        if fm.fileExists(atPath: dir) { try fm.removeItem(atPath: dir) }
        try fm.moveItem(atPath: work, toPath: dir)
        try fm.setAttributes([.posixPermissions: 0o755], ofItemAtPath: cacheDirectory)
        return guest
    }

    /// The version `linux-image-cloud-amd64` currently depends on, e.g. `6.1.0-56-cloud-amd64`.
    static func currentCloudKernelVersion() throws -> String {
        let out = try Shell.run(["apt-cache", "depends", "linux-image-cloud-amd64"])
        for line in out.split(separator: "\n") {
            if let r = line.range(of: "Depends: linux-image-") {
                let version = line[r.upperBound...].trimmingCharacters(in: .whitespaces)
                if version.hasSuffix("-cloud-amd64") { return version }
            }
        }
        throw ShellError(command: ["apt-cache", "depends", "linux-image-cloud-amd64"], status: 0,
                         stderr: "no linux-image-*-cloud-amd64 dependency found", stdout: out)
    }

    private static func unpackedKernel(version: String, cacheDirectory: String) throws -> String {
        let fm = FileManager.default
        let kdir = "\(cacheDirectory)/kernel-\(version)"
        if fm.fileExists(atPath: "\(kdir)/boot/vmlinuz-\(version)") { return kdir }
        let download = "\(cacheDirectory)/download"
        try fm.createDirectory(atPath: download, withIntermediateDirectories: true)
        // apt-get download writes into the current directory.
        try Shell.run(["sh", "-c", "cd \"$1\" && apt-get download -q \"$2\"", "sh", download, "linux-image-\(version)"])
        let debs = try fm.contentsOfDirectory(atPath: download).filter {
            $0.hasPrefix("linux-image-\(version)_") && $0.hasSuffix(".deb")
        }
        guard let deb = debs.first else {
            throw ShellError(command: ["apt-get", "download", "linux-image-\(version)"], status: 0,
                             stderr: "no .deb in \(download)", stdout: "")
        }
        try? fm.removeItem(atPath: "\(kdir).tmp")
        try Shell.run(["dpkg-deb", "-x", "\(download)/\(deb)", "\(kdir).tmp"])
        try fm.moveItem(atPath: "\(kdir).tmp", toPath: kdir)
        return kdir
    }

    private static func findFile(named name: String, under dir: String) throws -> String? {
        guard let e = FileManager.default.enumerator(atPath: dir) else { return nil }
        while let p = e.nextObject() as? String {
            if (p as NSString).lastPathComponent == name { return "\(dir)/\(p)" }
        }
        return nil
    }

    static func fnv1a(_ s: String) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in s.utf8 {
            h ^= UInt64(b)
            h = h &* 0x100_0000_01b3
        }
        return String(h, radix: 16)
    }
}
