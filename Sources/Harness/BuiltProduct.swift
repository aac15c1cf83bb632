import Foundation

/// The path of a product of this package (`vmhad`, `vmha`) built next to the running test or
/// tool binary; `swift build` builds every product first (scripts/test does).
public func builtProduct(_ name: String) throws -> String {
    let exe = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
    var directory = URL(fileURLWithPath: exe).deletingLastPathComponent()
    while directory.pathExtension == "xctest" { directory = directory.deletingLastPathComponent() }
    let path = directory.appendingPathComponent(name).path
    guard FileManager.default.isExecutableFile(atPath: path) else { throw ProductNotBuilt(path: path) }
    return path
}

public struct ProductNotBuilt: Error, CustomStringConvertible {
    public var path: String
    public var description: String { "\(path) not built: run `swift build` first" }
}
