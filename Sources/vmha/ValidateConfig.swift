import ArgumentParser
import Cluster
import Foundation

/// `vmha validate-config FILE`: parse and check a cluster configuration without starting anything.
struct ValidateConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate-config",
        abstract: "Check a cluster configuration file; prints one line naming the key and the problem.")

    @Argument(help: "The configuration file (TOML).")
    var file: String

    func run() throws {
        let text: String
        do {
            text = try String(contentsOfFile: file, encoding: .utf8)
        } catch {
            print("\(file): cannot read: \(error.localizedDescription)")
            throw ExitCode(78)  // EX_CONFIG
        }
        do {
            let config = try ClusterConfiguration.parse(text)
            print("\(file): ok: cluster \(config.clusterName), hosts \(config.hosts.map(\.name).joined(separator: ", ")), \(config.vms.count) VMs")
        } catch {
            print("\(file): \(error)")
            throw ExitCode(78)
        }
    }
}
