import Cluster
import Metrics
import Foundation
import Libvirt
import SystemCalls

/// `vmha add` and `vmha remove`: the configuration file is rewritten first (so a restarted vmhad
/// agrees), then the module is created or retired. Each host has its own file, so the operator
/// runs the same command on both hosts (as with DRBD's resource files); a VM known to one host
/// only stays WAIT there until the peer knows it too (or the peer is lost and the vote says so).
extension ClusterNode {
    /// Opens the VM's volumes as secondaries and puts its module in WAIT.
    func addModule(_ vm: VMConfiguration) async throws {
        let domainXML = try DomainXML(try String(contentsOfFile: vm.domainXMLPath, encoding: .utf8))
        for (index, disk) in vm.disks.enumerated() {
            let (key, value, known): (String, String, Bool) = switch disk.selector {
            case .target(let target): ("target", target, domainXML.disks.contains { $0.target == target })
            case .source(let path): ("source", path, domainXML.disks.contains { $0.sourcePath == path })
            }
            guard known else { throw VMHAClusterError("disks[\(index)].\(key): \"\(value)\" is not a disk of \(vm.domainXMLPath)") }
        }
        let module = VMModule(config: vm, domainXML: domainXML)
        module.failovers = Counter(label: "vmha_vm_failovers_total", dimensions: [("vm", vm.name), ("host", me.name)])
        module.restarts = Counter(label: "vmha_vm_restarts_total", dimensions: [("vm", vm.name), ("host", me.name)])
        try await openVolumes(module, as: .secondary)
        modules[vm.name] = module
        order.append(vm.name)
        _ = try transition(module, .startRequested)
        module.status.replica = await readLocalReplica(module)
    }

    /// `block`: one `[[vms]]` entry in TOML, as `ConfigurationEditor.adding` renders it.
    func addVM(block: String) async -> ControlResponse {
        let text: String
        do { text = try String(contentsOfFile: configPath, encoding: .utf8) } catch {
            return ControlResponse(ok: false, error: "\(configPath): cannot read: \(error.localizedDescription)")
        }
        let newText = (text.hasSuffix("\n") ? text : text + "\n") + block
        let updated: ClusterConfiguration
        do { updated = try ClusterConfiguration.parse(newText) } catch {
            return ControlResponse(ok: false, error: "\(error)")
        }
        guard let vm = updated.vms.last, updated.vms.count == config.vms.count + 1 else {
            return ControlResponse(ok: false, error: "the request does not hold exactly one VM")
        }
        guard FileManager.default.isReadableFile(atPath: vm.domainXMLPath) else {
            return ControlResponse(ok: false, error: "vms[\(updated.vms.count - 1)].domain_xml: cannot read \(vm.domainXMLPath)")
        }
        do {
            try await addModule(vm)
        } catch {
            if let module = modules.removeValue(forKey: vm.name) { await closeVolumes(module) }
            order.removeAll { $0 == vm.name }
            return ControlResponse(ok: false, error: "vms[\(updated.vms.count - 1)] (\(vm.name)): \(error)")
        }
        do { try write(newText) } catch {
            await retire(vm.name)
            return ControlResponse(ok: false, error: "\(configPath): cannot write: \(error.localizedDescription)")
        }
        config = updated
        record("\(vm.name) added (\(vm.disks.count) disk\(vm.disks.count == 1 ? "" : "s")); WAIT until \(peer.name) knows it too")
        return ControlResponse(ok: true, message: "\(vm.name) added on \(me.name); run the same `vmha add` on \(peer.name)")
    }

    /// Refuses while the VM runs here unless `stop` (then a clean guest shutdown first). The images
    /// and metadata stay on disk: removing a VM from vmha never deletes data.
    func removeVM(_ name: String, stop: Bool) async -> ControlResponse {
        guard let module = modules[name] else { return ControlResponse(ok: false, error: "no such VM: \(name)") }
        if [.prim, .alone].contains(module.status.state) {
            guard stop else {
                return ControlResponse(ok: false, error: "\(name) runs on \(me.name); move it (vmha migrate) or give --stop to shut it down")
            }
            do { try await stopDomain(module, graceful: true) } catch {
                return ControlResponse(ok: false, error: "\(name): shutting the domain down failed: \(error)")
            }
        }
        let text: String, newText: String, updated: ClusterConfiguration
        do {
            text = try String(contentsOfFile: configPath, encoding: .utf8)
            newText = try ConfigurationEditor.removing(vm: name, from: text)
            updated = try ClusterConfiguration.parse(newText)
            try write(newText)
        } catch {
            return ControlResponse(ok: false, error: "\(configPath): \(error)")
        }
        config = updated
        await retire(name)
        record("\(name) removed; its images and metadata are kept")
        return ControlResponse(ok: true, message: "\(name) removed from \(me.name) (images and metadata kept)")
    }

    private func retire(_ name: String) async {
        guard let module = modules.removeValue(forKey: name) else { return }
        order.removeAll { $0 == name }
        peerSummaries[name] = nil
        await closeVolumes(module)
    }

    /// Atomically: a reader (or a crash) sees the old file or the new one, never half of it.
    private func write(_ text: String) throws {
        let temporary = "\(configPath).vmha-new"
        try text.write(toFile: temporary, atomically: false, encoding: .utf8)
        if let attributes = try? FileManager.default.attributesOfItem(atPath: configPath),
            let mode = attributes[.posixPermissions]
        {
            try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: temporary)
        }
        do {
            _ = try Syscall.call("rename") { rename(temporary, configPath) }
        } catch {
            throw VMHAClusterError("rename \(temporary) → \(configPath): \(error)")
        }
    }
}
