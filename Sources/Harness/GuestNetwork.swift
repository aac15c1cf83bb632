import Foundation

/// The test guests' network on a simulated host: a Linux bridge `vmbr0` in the host's namespace
/// with the host's address 192.168.77.1/24, the same on every host (only one host runs a VM at a
/// time). A guest with ``GuestDomain/address`` gets a NIC on it: the namespace's libvirtd makes
/// the tap there. The bridge has no uplink, so nothing leaves the host's namespace.
public enum GuestNetwork {
    public static let bridge = "vmbr0"
    public static let hostAddress = "192.168.77.1"

    /// Creates the bridge in `host`'s namespace; it goes with the namespace at teardown.
    public static func create(on host: SimulatedHost) throws {
        // forward_delay 0: a guest's port forwards as soon as it is added.
        try Shell.run(["ip", "-n", host.netns, "link", "add", bridge, "type", "bridge", "forward_delay", "0"])
        try Shell.run(["ip", "-n", host.netns, "addr", "add", "\(hostAddress)/24", "dev", bridge])
        try Shell.run(["ip", "-n", host.netns, "link", "set", bridge, "up"])
    }

    /// QEMU's 52:54:00 and the last three bytes of the guest's IPv4 `ADDRESS/PREFIX`: fixed, and
    /// distinct per address.
    static func mac(_ address: String) -> String {
        let bytes = address.split(separator: "/")[0].split(separator: ".").suffix(3).map { Int($0) ?? 0 }
        return (["52", "54", "00"] + bytes.map { String(format: "%02x", $0) }).joined(separator: ":")
    }
}
