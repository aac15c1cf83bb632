import Cluster
import Foundation
import Sockets
import SystemCalls
import SystemPackage
import Testing
import Uring

@testable import HAService

#if canImport(Glibc)
import Glibc
#endif

/// The control API on the ring: real UNIX socket, real node (without libvirt).
@Suite("Control API", .serialized)
struct ControlServerTests {
    @Test(.timeLimit(.minutes(1))) func answersAndRefusesBadInputWithAReason() async throws {
        let (fixture, node, _) = try await NodeFixture.oneVMNode()
        defer { fixture.remove() }
        let path = fixture.directory + "/control.sock"
        let server = try ControlServer(path: path, node: node, ring: node.ring, logger: fixture.logger)
        let serving = Task(executorPreference: node.ring) { await server.run() }

        let status = try await ask(path, Array(#"{"command":"status"}"#.utf8) + [10])
        #expect(status.ok && status.status?.vms.map(\.name) == ["vm01"])
        let garbage = try await ask(path, Array("\u{1}\u{2}not json\n".utf8))
        #expect(!garbage.ok && garbage.error == "malformed request")
        let huge = try await ask(path, [UInt8](repeating: 0x41, count: 70_000))
        #expect(!huge.ok && huge.error?.contains("longer than 65536 bytes") == true, "\(huge.error ?? "")")
        let unknown = try await ask(path, Array(#"{"command":"explode"}"#.utf8) + [10])
        #expect(!unknown.ok && unknown.error == "unknown command explode")
        // A client that connects and says nothing, then goes away, costs nothing.
        _ = await exchange(path, [])
        let again = try await ask(path, Array(#"{"command":"events"}"#.utf8) + [10])
        #expect(again.ok && (again.events?.lastSequence ?? 0) > 0)

        serving.cancel()
        await serving.value
        #expect(access(path, F_OK) != 0, "the socket file is removed when the server stops")
        await node.stopAndShutDown()
    }
}

/// The answer to `bytes`, decoded; an answer that is not one names what came back.
func ask(_ path: String, _ bytes: [UInt8]) async throws -> ControlResponse {
    let answer = await exchange(path, bytes)
    do {
        return try JSONDecoder().decode(ControlResponse.self, from: Data(answer))
    } catch {
        throw HAServiceTestError("the answer to \(bytes.count) bytes (\(String(decoding: bytes.prefix(40), as: UTF8.self).debugDescription)) is not a response: \(answer.count) bytes \(String(decoding: answer.prefix(200), as: UTF8.self).debugDescription) … \(String(decoding: answer.suffix(120), as: UTF8.self).debugDescription)")
    }
}

struct HAServiceTestError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Sends `bytes` (then half-closes) and reads the answer to the end, on a thread of its own so
/// that the blocking calls hold no thread of Swift's pool. A call interrupted by a signal is
/// made again; any other failure ends the answer with a line naming the call and errno (an
/// empty answer once came back under parallel tests with nothing to say why).
func exchange(_ path: String, _ bytes: [UInt8]) async -> [UInt8] {
    await withCheckedContinuation { continuation in
        Thread.detachNewThread {
            var answer: [UInt8] = []
            func failed(_ call: String) { answer += Array("\n[exchange: \(call) failed: errno \(errno)]".utf8) }
            defer { continuation.resume(returning: answer) }
            guard let fd = try? UnixSocket.socket() else { return failed("socket") }
            defer { try? fd.close() }
            var connected: Int32 = -1
            repeat {
                connected = (try? UnixSocket.withAddress(path) { (address) throws(SystemCallError) -> Int32 in
                    connect(fd.rawValue, address.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(address.count))
                }) ?? -1
            } while connected != 0 && errno == EINTR
            guard connected == 0 else { return failed("connect") }
            var offset = 0
            while offset < bytes.count {
                let n = bytes[offset...].withUnsafeBytes { send(fd.rawValue, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if n < 0 && errno == EINTR { continue }
                // The server may answer and close before taking all of an oversized request.
                if n <= 0 { break }
                offset += n
            }
            shutdown(fd.rawValue, Int32(SHUT_WR))
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd.rawValue, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                // The server closed with some of our request unread (it refused it early): the
                // kernel reports that after the answer it queued, so the answer is whole.
                if n < 0 && errno == ECONNRESET { break }
                if n < 0 { return failed("read") }
                if n == 0 { break }
                answer += buffer[0..<n]
            }
        }
    }
}
