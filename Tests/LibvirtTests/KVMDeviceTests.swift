import Foundation
import Libvirt
import Testing

/// `KVMDevice.problem` on a stand-in file with the owners and modes /dev/kvm has with and
/// without udev (issue 11). Needs root (chown) and QEMU's user (libvirt-daemon-system).
@Suite("/dev/kvm usable by QEMU's user")
struct KVMDeviceTests {
    @Test func rootOnlyDeviceIsReportedAndKVMGroupDeviceIsNot() throws {
        let path = NSTemporaryDirectory() + "vmha-kvm-\(UInt32.random(in: 0...UInt32.max))"
        #expect(FileManager.default.createFile(atPath: path, contents: nil))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let kvm = try #require(getgrnam("kvm")).pointee.gr_gid

        #expect(chown(path, 0, 0) == 0 && chmod(path, 0o600) == 0)
        let problem = try #require(KVMDevice.problem(path: path))
        #expect(problem.contains("root root 600"))
        #expect(problem.contains("re-probes QEMU"))

        #expect(chown(path, 0, kvm) == 0 && chmod(path, 0o660) == 0)
        #expect(KVMDevice.problem(path: path) == nil)

        // Group kvm but no group write: still unusable.
        #expect(chmod(path, 0o640) == 0)
        #expect(KVMDevice.problem(path: path) != nil)
    }

    @Test func absentDeviceIsNoProblem() {
        #expect(KVMDevice.problem(path: "/nonexistent/kvm") == nil)
    }

    @Test func unknownQEMUUserIsReported() throws {
        let path = NSTemporaryDirectory() + "vmha-kvm-\(UInt32.random(in: 0...UInt32.max))"
        #expect(FileManager.default.createFile(atPath: path, contents: nil))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let problem = try #require(KVMDevice.problem(path: path, qemuUser: "vmha-no-such-user"))
        #expect(problem.contains("does not exist"))
    }
}
