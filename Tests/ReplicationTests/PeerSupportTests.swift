import Crypto
import Foundation
import Logging
import Sockets
import SystemPackage
import Testing
import Uring
@testable import Replication
import Volume

actor Asked {
    var values: [UInt64] = []
    func append(_ value: UInt64) { values.append(value) }
}

/// SUPPORT_REQUEST over a real loopback link: the answer arrives whole, in order, across chunks;
/// a wrong key gets nothing; a server that does not answer them refuses.
@Suite("Support bundle over the peer link", .serialized)
struct PeerSupportTests {
    static var key: SymmetricKey { SymmetricKey(data: Array(repeating: UInt8(9), count: 32)) }

    /// A replica server with no volumes on a free loopback port, bound before it is returned.
    func server(ring: IOUring, logger: Logger) throws -> (ReplicaServer, FileDescriptor, TCPSocket.Address) {
        for _ in 0..<20 {
            let address = TCPSocket.Address("127.0.0.1:\(UInt16.random(in: 20000...40000))")!
            guard let listener = try? TCPSocket.listen(address) else { continue }
            let options = ReplicationOptions(handshake: .init(hostName: "b", clusterName: "t", clusterKey: Self.key))
            return (ReplicaServer(listen: address, ring: ring, options: options, logger: logger), listener, address)
        }
        throw PeerLinkError.unexpected("no free port")
    }

    @Test(.timeLimit(.minutes(1))) func theAnswerCrossesWholeAndOnlyToTheKeyHolder() async throws {
        let logger = Logger(label: "test")
        let ring = try IOUring(logger: logger)
        let (server, listener, address) = try server(ring: ring, logger: logger)
        let serving = Task(executorPreference: ring) { await server.run(listener: listener) }
        defer { serving.cancel() }
        let asker = PeerHandshake.Configuration(hostName: "a", clusterName: "t", clusterKey: Self.key)

        // Not answered before the node says how: the request is refused, the link closed.
        await #expect(throws: (any Error).self) {
            _ = try await PeerSupportClient.fetch(from: address, configuration: asker, sinceSeconds: 0, timeout: .seconds(10), ring: ring, logger: logger)
        }

        // 2.5 MiB + 1: three chunks, the last not full.
        let part = (0..<((5 << 19) + 1)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 9) }
        let asked = Asked()
        server.answerSupportRequests { since in
            await asked.append(since)
            return part
        }
        let answer = try await PeerSupportClient.fetch(from: address, configuration: asker, sinceSeconds: 3600, timeout: .seconds(10), ring: ring, logger: logger)
        #expect(answer == part)
        #expect(await asked.values == [3600])

        // An empty part is one empty chunk.
        server.answerSupportRequests { _ in [] }
        #expect(try await PeerSupportClient.fetch(from: address, configuration: asker, sinceSeconds: 0, ring: ring, logger: logger).isEmpty)

        // Another key: the handshake fails, the part is never asked for.
        server.answerSupportRequests { since in
            await asked.append(since)
            return part
        }
        let stranger = PeerHandshake.Configuration(hostName: "a", clusterName: "t", clusterKey: SymmetricKey(data: Array(repeating: UInt8(1), count: 32)))
        do {
            _ = try await PeerSupportClient.fetch(from: address, configuration: stranger, sinceSeconds: 0, timeout: .seconds(10), ring: ring, logger: logger)
            Issue.record("a wrong key got an answer")
        } catch let error as PeerLinkError {
            guard case .handshakeFailed = error else { Issue.record("expected a failed handshake, got \(error)"); return }
        }
        #expect(await asked.values == [3600])
        serving.cancel()
        await serving.value
        await ring.shutdown()
    }

    /// Chunks out of order or past the total are protocol errors, decoded or not.
    @Test func malformedChunksAreRefused() throws {
        #expect(PeerSupportData.frames(for: Array(repeating: 1, count: 10), chunkSize: 4).map(\.chunk.count) == [4, 4, 2])
        #expect(PeerSupportData.frames(for: Array(repeating: 1, count: 10), chunkSize: 4).last?.isLast == true)
        var bad = PeerSupportData(byteOffset: 8, totalLength: 9, chunk: [1, 2][...]).encoded()
        var decoder = PeerFrameDecoder()
        decoder.receive(bad)
        let frame = try #require(try decoder.next())
        #expect(throws: PeerProtocolError.self) { _ = try PeerMessage(frame: frame) }
        // A stream id on a connection-level frame.
        bad = PeerSupportRequest(sinceSeconds: 1).encoded()
        bad[15] = 1
        var crc = CRC32C()
        bad[0..<28].withUnsafeBytes { crc.update($0) }
        bad.replaceSubrange(28..<32, with: withUnsafeBytes(of: crc.value.bigEndian) { Array($0) })
        var second = PeerFrameDecoder()
        second.receive(bad)
        let tagged = try #require(try second.next())
        #expect(throws: PeerProtocolError.self) { _ = try PeerMessage(frame: tagged) }
    }
}
