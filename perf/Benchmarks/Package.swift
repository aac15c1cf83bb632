// swift-tools-version:6.1
// Micro-benchmarks of vmha's hot paths (ordo-one/benchmark). See README.md.
// A separate package so that the main package and its CI never build the benchmark harness.
import Foundation
import PackageDescription

/// A benchmark executable in Benchmarks/<name>/ with the boilerplate plugin.
func benchmark(_ name: String, _ dependencies: [Target.Dependency]) -> Target {
    .executableTarget(
        name: name,
        dependencies: [.product(name: "Benchmark", package: "benchmark")] + dependencies,
        path: "Benchmarks/\(name)",
        plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")])
}

/// SwiftPM names a path dependency after its folder, not its manifest: the main package is
/// whatever this checkout's folder is called (vmha, main, a worktree's name, CI's clone).
let vmha = URL(fileURLWithPath: Context.packageDirectory)
    .deletingLastPathComponent().deletingLastPathComponent().lastPathComponent.lowercased()
let volume: Target.Dependency = .product(name: "Volume", package: vmha)

let package = Package(
    name: "vmha-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: "../.."),
        // The trait list replaces the default traits: it leaves out RuntimeInterposer, whose
        // package is not available here.
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        benchmark("DirtyBitmapBenchmarks", [volume]),
        benchmark("CRC32CBenchmarks", [volume]),
        benchmark("ResyncChecksumBenchmarks", [.product(name: "Crypto", package: "swift-crypto")]),
        benchmark("ActivityLogBenchmarks", [volume]),
        benchmark("NBDRequestBenchmarks", [volume]),
        benchmark("PeerFrameBenchmarks", [volume, .product(name: "Replication", package: vmha)]),
    ],
    swiftLanguageModes: [.v6]
)
