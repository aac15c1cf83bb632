import ArgumentParser

/// `NAME:IMAGE:SOCKET[:METADATA]` — one replicated disk served as an NBD export.
struct ExportSpec: ExpressibleByArgument, Sendable {
    var name: String
    var imagePath: String
    var socketPath: String
    var metadataPath: String

    init?(argument: String) {
        let parts = argument.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard (3...4).contains(parts.count), parts.allSatisfy({ !$0.isEmpty }) else { return nil }
        name = parts[0]
        imagePath = parts[1]
        socketPath = parts[2]
        metadataPath = parts.count == 4 ? parts[3] : parts[1] + ".vmha"
    }

    static var defaultValueDescription: String { "NAME:IMAGE:SOCKET[:METADATA]" }
}
