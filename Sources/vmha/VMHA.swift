import ArgumentParser
import Cluster

/// vmha: the command-line side of vmha. Subcommands exist only when they work.
@main
struct VMHA: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vmha",
        abstract: "Keep KVM virtual machines running across two hosts that share no disk.",
        discussion: """
            vmhad runs on each host and serves every replicated disk to QEMU as an NBD export;
            vmha drives it (status, migrate, resync, place), runs the witness, measures (bench)
            and shows the whole cluster on one machine (demo). Exit codes: docs/cli.md.
            """,
        version: VMHAVersion.current,
        subcommands: [
            Demo.self, Status.self, Events.self, Migrate.self, Resync.self, Place.self, Add.self, Remove.self, Witness.self, Bench.self, Check.self,
            ValidateConfig.self, Inspect.self, SupportBundleCommand.self,
        ])
}
