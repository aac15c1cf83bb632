import ArgumentParser

/// `NAME:IMAGE[:METADATA]` — a secondary replica of a peer's volume.
struct ReplicaSpec: ExpressibleByArgument, Sendable {
    var name: String
    var imagePath: String
    var metadataPath: String

    init?(argument: String) {
        let parts = argument.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard (2...3).contains(parts.count), parts.allSatisfy({ !$0.isEmpty }) else { return nil }
        name = parts[0]
        imagePath = parts[1]
        metadataPath = parts.count == 3 ? parts[2] : parts[1] + ".vmha"
    }

    static var defaultValueDescription: String { "NAME:IMAGE[:METADATA]" }
}
