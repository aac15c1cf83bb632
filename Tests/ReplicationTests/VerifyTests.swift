import Crypto
import Foundation
import Logging
import Sockets
import SystemPackage
import Testing
import Uring
@testable import Replication
@testable import Volume

/// Online verify and checksum resync, with both ends in this process over loopback TCP.
@Suite("Online verify", .serialized)
struct VerifyTests {
    @Test(.timeLimit(.minutes(1))) func verifyFindsACorruptReplicaBlockAndAResyncRepairsIt() async throws {
        let directory = NSTemporaryDirectory() + "vmha-verify-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let imageA = directory + "/a.img", imageB = directory + "/b.img"
        try Data((0..<(16 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 12) }).write(to: URL(fileURLWithPath: imageA))
        try Data(count: 16 << 20).write(to: URL(fileURLWithPath: imageB))
        let logger = Logger(label: "test")
        let ring = try IOUring(logger: logger)
        let a = try await LocalVolume.open(.init(name: "d0", imagePath: imageA, metadataPath: imageA + ".vmha"), ring: ring, logger: logger)
        var secondary = LocalVolume.Configuration(name: "d0", imagePath: imageB, metadataPath: imageB + ".vmha")
        secondary.initialRole = .secondary
        let b = try await LocalVolume.open(secondary, ring: ring, logger: logger)
        let port = UInt16.random(in: 20000...40000)
        let address = try #require(TCPSocket.Address("127.0.0.1:\(port)"))
        let options = ReplicationOptions(
            handshake: .init(hostName: "a", clusterName: "t", clusterKey: SymmetricKey(data: Array(repeating: UInt8(7), count: 32))))
        var replicaOptions = options
        replicaOptions.handshake = .init(hostName: "b", clusterName: "t", clusterKey: SymmetricKey(data: Array(repeating: UInt8(7), count: 32)))
        let server = ReplicaServer(listen: address, volumes: [b], ring: ring, options: replicaOptions, logger: logger)
        let serving = Task(executorPreference: ring) { try await server.run() }
        try await Task.sleep(for: .milliseconds(200))
        let primary = PrimaryReplication(volume: a, peer: address, options: options, logger: logger)
        let replicating = Task(executorPreference: ring) { await primary.run() }
        func waitForPasses(_ n: Int) async throws {
            for _ in 0..<300 where primary.status.resyncsCompleted < n { try await Task.sleep(for: .milliseconds(50)) }
            #expect(primary.status.resyncsCompleted >= n)
        }
        try await waitForPasses(1)  // the initial full sync

        // A block of the replica goes bad behind vmha's back.
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: imageB))
        try handle.seek(toOffset: 5 << 20)
        handle.write(Data(repeating: 0xEE, count: 4096))
        try handle.close()

        primary.requestResync(.verify)
        try await waitForPasses(2)
        #expect(primary.status.verifyMismatchBytes == 4 << 20, "one 4 MiB verify block differs")
        #expect(await a.dirtyBytes > 0, "the difference is marked for the next resync")
        primary.requestResync(.incremental)
        try await waitForPasses(3)
        #expect(await a.dirtyBytes == 0)

        replicating.cancel()
        await replicating.value
        serving.cancel()
        _ = try? await serving.value
        try await a.close()
        try await b.close()
        await ring.shutdown()
        #expect(try Data(contentsOf: URL(fileURLWithPath: imageA)) == Data(contentsOf: URL(fileURLWithPath: imageB)))
    }
}
