import ArgumentParser
import Foundation
import Volume

/// `vmha inspect METADATA`: a volume's metadata as it is on disk, read only.
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a volume's metadata file: superblock copies, generations, flags, dirty bitmap summary, activity-log slots (read only).",
        discussion: "Exit status: 0 shown; 65 (EX_DATAERR) not a vmha metadata file, an unknown version or both superblocks damaged; 66 cannot read the file.")

    @Argument(help: "The metadata file (the disk's `metadata` in the configuration, e.g. IMAGE.vmha).")
    var file: String
    @Flag(help: "Machine-readable output.") var json = false

    func run() throws {
        let inspection: MetadataInspection
        do {
            inspection = try MetadataInspection.read(path: file)
        } catch let error as VolumeMetadataError {
            FileHandle.standardError.write(Data("vmha: \(file): \(error)\n".utf8))
            throw ExitCode(65)
        } catch {
            FileHandle.standardError.write(Data("vmha: \(file): cannot read: \(error.localizedDescription)\n".utf8))
            throw ExitCode(66)
        }
        if json { try printJSON(inspection); return }
        print(inspection.summary)
    }
}
