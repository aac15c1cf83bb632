// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "vmha",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "vmhad", targets: ["vmhad"]),
        .executable(name: "vmha", targets: ["vmha"]),
        .library(name: "SystemCalls", targets: ["SystemCalls"]),
        .library(name: "Locking", targets: ["Locking"]),
        .library(name: "Sockets", targets: ["Sockets"]),
        .library(name: "Uring", targets: ["Uring"]),
        .library(name: "Libvirt", targets: ["Libvirt"]),
        .library(name: "Volume", targets: ["Volume"]),
        .library(name: "Replication", targets: ["Replication"]),
        .library(name: "Cluster", targets: ["Cluster"]),
        .library(name: "HAService", targets: ["HAService"]),
        .library(name: "Simulation", targets: ["Simulation"]),
        .executable(name: "vmha-sim", targets: ["vmha-sim"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        // C edges: system libraries only, one shim header each.
        .systemLibrary(
            name: "CUring", path: "CUring", pkgConfig: "liburing",
            providers: [.apt(["liburing-dev"])]),
        .systemLibrary(
            name: "CLibvirt", path: "CLibvirt", pkgConfig: "libvirt",
            providers: [.apt(["libvirt-dev"])]),

        // The one wrapper of raw system calls (`Syscall.call`: the call's name and its errno as a
        // `SystemCallError`, EINTR retried), the host's monotonic clock, O_DIRECT.
        .target(
            name: "SystemCalls",
            dependencies: [.product(name: "SystemPackage", package: "swift-system")]),

        // `Locked` (a value behind a pthread mutex) and `AsyncSemaphore` (tasks waiting their turn).
        // Not `Synchronization`: that is the standard library's module (`Mutex`, `Atomic`), which
        // Libvirt and Harness import too; not `Concurrency`: it reads as Swift's `_Concurrency`.
        .target(name: "Locking"),

        // Sockets before the ring sees them: creation, options, bind/listen, IPv4 and UNIX
        // addresses, and the blocking UDP the witness runs on. Accept, connect, recv and send on a
        // ring are ring operations (`Uring`).
        .target(
            name: "Sockets",
            dependencies: ["SystemCalls", .product(name: "SystemPackage", package: "swift-system")]),

        // Thin Swift wrappers over the C edges. Uring is the io_uring engine only: the ring, its
        // operations (file and socket I/O), its executor, and `SerializedSender` on it.
        .target(
            name: "Uring",
            dependencies: [
                "CUring", "SystemCalls", "Locking",
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .target(
            name: "Libvirt",
            dependencies: [
                "CLibvirt",
                .product(name: "Logging", package: "swift-log"),
            ]),

        // The two policies both the data path and the HA logic name: how a split brain is settled,
        // and what a primary does with writes its peer misses.
        .target(name: "ReplicationPolicy"),

        // The data path: NBD server, dirty bitmap, activity log, metadata.
        .target(
            name: "Volume",
            dependencies: [
                "Uring", "SystemCalls", "Locking", "Sockets", "ReplicationPolicy",
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]),

        // The remote half of the data path: authenticated peer link, protocol C, resync.
        .target(
            name: "Replication",
            dependencies: [
                "Uring", "SystemCalls", "Locking", "Sockets", "Volume", "ReplicationPolicy",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]),

        // The HA service's logic: config, module state machine, heartbeats, witness, placement, failover.
        .target(
            name: "Cluster",
            dependencies: [
                "ReplicationPolicy",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "TOMLKit", package: "TOMLKit"),
                .product(name: "Logging", package: "swift-log"),
            ]),

        // One host's HA service: the cluster node (module state machines, heartbeats, witness,
        // volumes, domains) and its control API. vmhad is its wiring (arguments, service group).
        .target(
            name: "HAService",
            dependencies: [
                "Uring", "SystemCalls", "Locking", "Sockets", "Volume", "Replication", "ReplicationPolicy", "Cluster",
                "Libvirt",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SystemPackage", package: "swift-system"),
                // /metrics: the Prometheus registry, served over HTTP; the console on the same server kind.
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                // The checks' TCP connects.
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]),

        // Two hosts' decision code (HostPolicy and what it runs on) against a model of the world.
        .target(name: "Simulation", dependencies: ["Cluster", "ReplicationPolicy", "Volume", "Replication"]),

        // Simulated hypervisor hosts and the test guest (used by tests, `vmha demo` and perf/).
        .target(
            name: "Harness",
            dependencies: [
                "Libvirt", "Cluster", "SystemCalls", "Sockets",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]),

        .executableTarget(
            name: "vmhad",
            dependencies: [
                "Uring", "Sockets", "Volume", "Replication", "ReplicationPolicy", "Cluster", "HAService",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]),
        .executableTarget(
            name: "vmha",
            dependencies: [
                "Uring", "SystemCalls", "Locking", "Sockets", "Volume", "Replication", "Cluster", "Libvirt", "Harness", "HAService",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]),

        // The deterministic simulator: `swift run -c release vmha-sim --schedules N` (docs/simulator.md).
        .executableTarget(
            name: "vmha-sim",
            dependencies: ["Simulation", .product(name: "ArgumentParser", package: "swift-argument-parser")]),

        // perf/: the measuring side of the benchmark suite (perf/run drives it and the baselines).
        .executableTarget(
            name: "vmha-perf",
            dependencies: [
                "Uring", "SystemCalls", "Harness", "Libvirt", "Cluster",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "perf/Sources/vmha-perf"),
        // libFuzzer target for the peer frame decoder and handshake (docs/protocol.md, "Fuzzing").
        // --export-dynamic lets main.swift find libFuzzer's LLVMFuzzerRunDriver with dlsym when
        // built with -sanitize=fuzzer (its own top-level code wins over libFuzzer's main).
        .executableTarget(
            name: "PeerFrameFuzz", dependencies: ["Replication"], path: "perf/Fuzz/PeerFrameFuzz",
            linkerSettings: [.unsafeFlags(["-Xlinker", "--export-dynamic"])]),

        .testTarget(name: "UringTests", dependencies: ["Uring", "Sockets", "SystemCalls"]),
        .testTarget(
            name: "LibvirtTests",
            dependencies: ["Libvirt", "Harness", .product(name: "Logging", package: "swift-log")],
            resources: [.copy("Fixtures")]),
        .testTarget(name: "VolumeTests", dependencies: ["Volume", "ReplicationPolicy", "Uring", "SystemCalls", "Harness"]),
        .testTarget(
            name: "ReplicationTests", dependencies: ["Replication", "ReplicationPolicy", "Volume", "Uring", "Sockets", "Harness"]),
        .testTarget(name: "ClusterTests", dependencies: ["Cluster", "ReplicationPolicy"]),
        .testTarget(name: "SimulationTests", dependencies: ["Simulation", "Cluster"]),
        .testTarget(
            name: "HAServiceTests",
            dependencies: [
                "HAService", "Cluster", "Libvirt", "Volume", "Replication", "Uring", "SystemCalls", "Locking", "Sockets", "Harness",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]),
        // The HA service end to end: vmhad --config on simulated hosts, real guests, a witness.
        .testTarget(
            name: "HATests",
            dependencies: [
                "Harness", "Libvirt", "Cluster", "Volume", "Replication", "Locking", "Sockets",
                .product(name: "Logging", package: "swift-log"),
            ]),
        // A real guest on a real vmhad export (simulated libvirt host, needs root).
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["Harness", "Libvirt", "Volume", "Uring", .product(name: "Logging", package: "swift-log")]),
    ],
    swiftLanguageModes: [.v6]
)
