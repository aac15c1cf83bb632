import Cluster
import Foundation
import Harness

#if canImport(Glibc)
import Glibc
#endif

/// The built products next to the test bundle (`swift build` first).
func builtProduct(_ name: String) throws -> String {
    let exe = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
    var directory = URL(fileURLWithPath: exe).deletingLastPathComponent()
    while directory.pathExtension == "xctest" || directory.lastPathComponent == "MacOS" {
        directory = directory.deletingLastPathComponent()
    }
    let path = directory.appendingPathComponent(name).path
    guard FileManager.default.isExecutableFile(atPath: path) else {
        throw HATestError("\(path) not built: run `swift build` first")
    }
    return path
}

struct HATestError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
