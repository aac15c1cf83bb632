import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Whether QEMU's user can open `/dev/kvm`.
///
/// libvirt 9 records at probe time whether KVM was usable, keyed by the device's ctime; when the
/// device exists but QEMU's user cannot open it (no udev: `root root 0600`), the stored value never
/// matches and every capabilities lookup re-probes QEMU, ~4 s each, serially — every define and
/// start then takes tens of seconds (issue 11). Debian's udev rule gives it `root kvm 0660`.
public enum KVMDevice {
    public static let path = "/dev/kvm"

    /// One line naming the problem and its fix, or nil when the device is absent (libvirt then
    /// caches "no KVM" correctly) or usable by `user`.
    public static func problem(path: String = KVMDevice.path, qemuUser user: String = "libvirt-qemu") -> String? {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
            let owner = (attributes[.ownerAccountID] as? NSNumber)?.uint32Value,
            let group = (attributes[.groupOwnerAccountID] as? NSNumber)?.uint32Value,
            let mode = (attributes[.posixPermissions] as? NSNumber)?.uint16Value
        else { return nil }
        let describe = "\(path) is \(name(ofUser: owner)) \(name(ofGroup: group)) \(String(mode, radix: 8))"
        guard let account = getpwnam(user) else {
            return "\(describe) and QEMU's user \(user) does not exist (is libvirt-daemon-system installed?)"
        }
        let uid = account.pointee.pw_uid
        let groups = groupIDs(of: user, primary: account.pointee.pw_gid)
        let rw: UInt16 = 0o6
        let usable =
            uid == 0 || (owner == uid && (mode >> 6) & rw == rw) || (groups.contains(group) && (mode >> 3) & rw == rw)
            || mode & rw == rw
        if usable { return nil }
        return "\(describe): QEMU's user \(user) cannot open it, so libvirt re-probes QEMU (~4 s) at every capabilities lookup and every domain define/start takes tens of seconds; fix: chgrp kvm \(path) && chmod 0660 \(path) (what Debian's udev rule does; scripts/install-deps does it)"
    }

    private static func groupIDs(of user: String, primary: gid_t) -> Set<gid_t> {
        var count: Int32 = 64
        var groups = [gid_t](repeating: 0, count: Int(count))
        if getgrouplist(user, primary, &groups, &count) < 0 {
            groups = [gid_t](repeating: 0, count: Int(count))
            _ = getgrouplist(user, primary, &groups, &count)
        }
        return Set(groups.prefix(Int(max(count, 0))))
    }

    private static func name(ofUser uid: UInt32) -> String {
        getpwuid(uid).map { String(cString: $0.pointee.pw_name) } ?? "\(uid)"
    }

    private static func name(ofGroup gid: UInt32) -> String {
        getgrgid(gid).map { String(cString: $0.pointee.gr_name) } ?? "\(gid)"
    }
}
