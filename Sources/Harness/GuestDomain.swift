/// The libvirt domain XML for a ``TestGuest``.
public struct GuestDomain: Sendable {
    public enum Workload: String, Sendable { case records, ticks, idle }

    public enum Disk: Sendable {
        /// A local image file (`<disk type='file'>`).
        case file(path: String, format: String = "raw")
        /// An NBD export on a UNIX socket, with the stop error policies vmha uses.
        case nbd(socket: String, export: String = "", format: String = "raw")
    }

    public var name: String
    public var uuid: String?
    /// `qemu` (TCG, for nested/simulated hosts) or `kvm` on real hypervisors.
    public var domainType: String = "qemu"
    public var memoryMiB: Int = 192
    public var vcpus: Int = 1
    public var workload: Workload
    /// Seconds between records (`vmha.interval`).
    public var interval: Double = 0.2
    /// In order: vda, vdb, … With more than one, `records` writes to each (``GuestInit``).
    public var disks: [Disk]
    public var serialLog: String
    /// Two virtio-serial ports (``GuestInit``): the guest agent's `org.qemu.guest_agent.0`, for
    /// the `agent` check, and `vmha.control`, the test's way in (``GuestControl``). Off by
    /// default, so other tests' guests stay as they were.
    public var channels = false
    /// A virtio NIC on a bridge of the host that runs the guest (``GuestNetwork``); the guest
    /// takes this `ADDRESS/PREFIX` and serves TCP port 80 (``GuestInit``). nil (the default):
    /// no NIC, so other tests' guests stay as they were.
    public var address: String?

    public init(name: String, workload: Workload, disks: [Disk], serialLog: String) {
        self.name = name
        self.workload = workload
        self.disks = disks
        self.serialLog = serialLog
    }

    public func xml(guest: TestGuest) -> String {
        let targets = ["vda", "vdb", "vdc", "vdd", "vde", "vdf"]
        var diskXML = ""
        for (i, disk) in disks.enumerated() {
            switch disk {
            case .file(let path, let format):
                diskXML += """
                    <disk type='file' device='disk'>
                      <driver name='qemu' type='\(format)' cache='none' error_policy='stop' rerror_policy='stop'/>
                      <source file='\(escaped(path))'/>
                      <target dev='\(targets[i])' bus='virtio'/>
                    </disk>

                """
            case .nbd(let socket, let export, let format):
                let name = export.isEmpty ? "" : " name='\(escaped(export))'"
                diskXML += """
                    <disk type='network' device='disk'>
                      <driver name='qemu' type='\(format)' cache='none' error_policy='stop' rerror_policy='stop'/>
                      <source protocol='nbd'\(name)>
                        <host transport='unix' socket='\(escaped(socket))'/>
                      </source>
                      <target dev='\(targets[i])' bus='virtio'/>
                    </disk>

                """
            }
        }
        // Only a multi-disk domain names its disks, so a one-disk guest's XML stays as it was.
        let disksArgument = disks.count > 1 ? " vmha.disks=" + targets.prefix(disks.count).joined(separator: ",") : ""
        let uuidXML = uuid.map { "  <uuid>\($0)</uuid>\n" } ?? ""
        // No source: libvirt puts each socket under its channel directory
        // (/var/lib/libvirt/qemu/channel/target/domain-ID-NAME/), inside the simulated host's own.
        let channelXML = channels ? """
                <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
                <channel type='unix'><target type='virtio' name='\(GuestControl.portName)'/></channel>

            """ : ""
        // A fixed MAC, the same at every start (vmhad defines the domain anew each time, and
        // libvirt would pick a random one): a host's neighbour entry for the guest's address
        // never names an old NIC. (With the guest alone on the bridge, its tap going away takes
        // the bridge's carrier and flushes the entries anyway.)
        let interfaceXML = address.map { address in
            """
                <interface type='bridge'>
                  <source bridge='\(GuestNetwork.bridge)'/>
                  <mac address='\(GuestNetwork.mac(address))'/>
                  <model type='virtio'/>
                </interface>

            """
        } ?? ""
        let ipArgument = address.map { " vmha.ip=\($0)" } ?? ""
        return """
            <domain type='\(domainType)'>
              <name>\(escaped(name))</name>
            \(uuidXML)  <memory unit='MiB'>\(memoryMiB)</memory>
              <vcpu>\(vcpus)</vcpu>
              <os>
                <type arch='x86_64' machine='pc'>hvm</type>
                <kernel>\(escaped(guest.kernel))</kernel>
                <initrd>\(escaped(guest.initrd))</initrd>
                <cmdline>console=ttyS0 quiet panic=-1 vmha.workload=\(workload.rawValue) vmha.interval=\(interval)\(ipArgument)\(disksArgument)</cmdline>
              </os>
              <features><acpi/></features>
              <on_poweroff>destroy</on_poweroff>
              <on_reboot>restart</on_reboot>
              <on_crash>destroy</on_crash>
              <devices>
            \(diskXML)    <serial type='file'>
                  <source path='\(escaped(serialLog))' append='on'/>
                  <target port='0'/>
                </serial>
            \(channelXML)\(interfaceXML)    <memballoon model='none'/>
              </devices>
            </domain>
            """
    }

    private func escaped(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "'", with: "&apos;")
            .replacingOccurrences(of: "<", with: "&lt;")
    }
}
