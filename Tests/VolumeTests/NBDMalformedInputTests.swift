import Foundation
import Testing
import Uring
@testable import Volume

#if canImport(Glibc)
import Glibc
#endif

/// Hostile and broken clients against the live server (real socket, real io_uring, real file):
/// each case checks what the misbehaving client gets, that another client is still served
/// correctly afterwards, and that rejected requests wrote nothing (the image is compared byte for
/// byte with a model of every accepted write).
@Suite("NBD malformed input", .serialized)
struct NBDMalformedInputTests {
    // MARK: Handshake

    @Test func wrongClientFlagsOrOptionMagicCloseOnlyThatClient() async throws {
        try await PatternedExport.serve { image, socket in
            let outcomes = try await blocking { () -> [String: Bool] in
                var closed: [String: Bool] = [:]
                // Fixed newstyle missing: the spec says close.
                var c = try RawNBDClient(path: socket)
                try c.readGreeting()
                try c.send(RawNBDClient.u32(0))
                closed["no fixed newstyle"] = c.closedByServer()
                // A flag the server did not advertise.
                c = try RawNBDClient(path: socket)
                try c.readGreeting()
                try c.send(RawNBDClient.u32(0x8000_0001))
                closed["unknown client flag"] = c.closedByServer()
                // Option request without IHAVEOPT, then a GO that must never be answered.
                c = try RawNBDClient(path: socket)
                try c.readGreeting()
                try c.send(RawNBDClient.u32(3))
                try c.send(NBDTestClient.option(.go, NBDTestClient.goData("disk0"), magic: 0x4948_4156_454F_5055))
                closed["bad option magic"] = c.closedByServer()
                // Garbage instead of a client: 64 random bytes.
                c = try RawNBDClient(path: socket)
                try c.readGreeting()
                try c.send((0..<64).map { _ in UInt8.random(in: 0...255) } + RawNBDClient.u32(0xFFFF_FFFF))
                closed["random bytes"] = c.closedByServer()
                return closed
            }
            #expect(outcomes.count == 4)
            for (name, closed) in outcomes { #expect(closed, "\(name): the server must close the connection") }
        }
    }

    @Test func unknownOptionIsRefusedAndNegotiationContinues() async throws {
        try await PatternedExport.serve { image, socket in
            let (unknown, structured, size, block) = try await blocking {
                let c = try RawNBDClient(path: socket)
                try c.readGreeting()
                try c.send(RawNBDClient.u32(3))
                try c.send(NBDTestClient.option(.init(rawValue: 0x7777), [1, 2, 3, 4, 5]))
                let unknown = try c.readOptionReply()
                try c.send(NBDTestClient.option(.startTLS))
                let structured = try c.readOptionReply()
                // The same session still negotiates and serves.
                let size = try c.go(export: "disk0")
                let block = try c.read(cookie: 9, offset: 4096, length: 4096)
                try c.send(NBDRequest(command: .disconnect, cookie: 10, offset: 0, length: 0).encoded())
                return (unknown, structured, size, block)
            }
            #expect(size == UInt64(image.model.count))
            #expect(unknown.option.rawValue == 0x7777)
            #expect(unknown.type == .errUnsupported)
            #expect(structured.option == .startTLS)
            #expect(structured.type == .errUnsupported)
            #expect(block.error == .none && block.cookie == 9)
            #expect(block.data == Array(image.model[4096..<8192]))
        }
    }

    @Test func unknownExportNameIsRefused() async throws {
        try await PatternedExport.serve { image, socket in
            let (refusal, block, legacyClosed) = try await blocking {
                let c = try RawNBDClient(path: socket)
                try c.readGreeting()
                try c.send(RawNBDClient.u32(3))
                try c.send(NBDTestClient.option(.go, NBDTestClient.goData("no-such-disk")))
                let refusal = try c.readOptionReply()
                _ = try c.go(export: "disk0")  // negotiation went on
                let block = try c.read(cookie: 1, offset: 0, length: 8192)
                // Legacy EXPORT_NAME has no error reply: an unknown name closes the connection.
                let legacy = try RawNBDClient(path: socket)
                try legacy.readGreeting()
                try legacy.send(RawNBDClient.u32(3))
                try legacy.send(NBDTestClient.option(.exportName, Array("no-such-disk".utf8)))
                return (refusal, block, legacy.closedByServer())
            }
            #expect(refusal.type == .errUnknown)
            #expect(String(decoding: refusal.data, as: UTF8.self).contains("no-such-disk"))
            #expect(block.error == .none && block.data == Array(image.model[0..<8192]))
            #expect(legacyClosed)
        }
    }

    @Test func stalledHandshakeIsClosedAfterTheTimeout() async throws {
        try await PatternedExport.serve(handshakeTimeout: .milliseconds(500)) { image, socket in
            // Two stalled clients (silent after the greeting; stuck inside an option), timed
            // while a well-behaved client is served next to them.
            let stalled = Task {
                try await blocking { () -> [Duration] in
                    let clock = ContinuousClock()
                    let silent = try RawNBDClient(path: socket, receiveTimeout: .seconds(5))
                    let started = clock.now
                    try silent.readGreeting()
                    let partial = try RawNBDClient(path: socket, receiveTimeout: .seconds(5))
                    try partial.readGreeting()
                    try partial.send(RawNBDClient.u32(3) + Array(NBDTestClient.option(.go, NBDTestClient.goData("disk0")).prefix(10)))
                    var elapsed: [Duration] = []
                    if silent.closedByServer() { elapsed.append(clock.now - started) }
                    if partial.closedByServer() { elapsed.append(clock.now - started) }
                    return elapsed
                }
            }
            try await image.checkServedCorrectly(useQemuIO: false)
            let elapsed = try await stalled.value
            #expect(elapsed.count == 2, "both stalled clients are closed")
            for e in elapsed { #expect(e >= .milliseconds(400) && e < .seconds(4), "closed after \(e)") }

            // A client that negotiated in time and then idles past the timeout is not dropped.
            let late = try await blocking {
                let c = try RawNBDClient(path: socket)
                try c.negotiate()
                Thread.sleep(forTimeInterval: 1.2)
                return try c.read(cookie: 5, offset: 12288, length: 4096)
            }
            #expect(late.error == .none && late.data == Array(image.model[12288..<16384]))
        }
    }

    // MARK: Transmission

    @Test func wrongRequestMagicDropsTheConnection() async throws {
        try await PatternedExport.serve { image, socket in
            let closed = try await blocking {
                let c = try RawNBDClient(path: socket)
                try c.negotiate()
                // A WRITE with a corrupted magic and a payload: must not be executed.
                var header = NBDRequest(command: .write, cookie: 1, offset: 65536, length: 4096).encoded()
                header[3] ^= 0xFF
                try c.send(header + [UInt8](repeating: 0xEE, count: 4096))
                return c.closedByServer()
            }
            #expect(closed)
        }
    }

    @Test func unknownCommandGetsEINVALAndTheConnectionKeepsWorking() async throws {
        try await PatternedExport.serve { image, socket in
            let replies = try await blocking { () -> [RawNBDClient.Reply] in
                let c = try RawNBDClient(path: socket)
                try c.negotiate()
                var replies: [RawNBDClient.Reply] = []
                for (cookie, command) in [(0xA1, 77), (0xA2, Int(NBD.Command.blockStatus.rawValue)), (0xA3, Int(NBD.Command.cache.rawValue))] {
                    try c.send(NBDRequest(command: .init(rawValue: UInt16(command)), cookie: UInt64(cookie), offset: 0, length: 4096).encoded())
                    replies.append(try c.readReply(dataLength: 0))
                }
                // Flags the export did not advertise (DF) on a READ.
                try c.send(NBDRequest(command: .read, flags: .doNotFragment, cookie: 0xA4, offset: 0, length: 4096).encoded())
                replies.append(try c.readReply(dataLength: 0))
                // Zero-length and misaligned requests.
                try c.send(NBDRequest(command: .read, cookie: 0xA5, offset: 0, length: 0).encoded())
                replies.append(try c.readReply(dataLength: 0))
                try c.send(NBDRequest(command: .write, cookie: 0xA6, offset: 100, length: 512, payload: [UInt8](repeating: 0xEE, count: 512)).encoded())
                replies.append(try c.readReply(dataLength: 0))
                // The same connection still reads correctly.
                replies.append(try c.read(cookie: 0xA7, offset: 8192, length: 4096))
                return replies
            }
            #expect(replies.map(\.cookie) == [0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7])
            #expect(replies.prefix(6).allSatisfy { $0.error == .einval }, "\(replies.map(\.error))")
            #expect(replies.last?.error == NBD.ErrorCode.none)
            #expect(replies.last?.data == Array(image.model[8192..<12288]))
        }
    }

    @Test func requestsBeyondTheExportGetAnErrorAndTheNextRequestWorks() async throws {
        try await PatternedExport.serve { image, socket in
            let size = UInt64(image.model.count)
            let fresh = (0..<8192).map { _ in UInt8.random(in: 0...255) }
            let (exportSize, replies) = try await blocking { () -> (UInt64, [RawNBDClient.Reply]) in
                let c = try RawNBDClient(path: socket)
                let exportSize = try c.negotiate()
                var replies: [RawNBDClient.Reply] = []
                let junk = [UInt8](repeating: 0xEE, count: 8192)
                // Straddling the end, wholly past it, and offset+length wrapping around 2^64.
                try c.send(NBDRequest(command: .read, cookie: 1, offset: size - 4096, length: 8192).encoded())
                replies.append(try c.readReply(dataLength: 0))
                try c.send(NBDRequest(command: .write, cookie: 2, offset: size - 4096, length: 8192, payload: junk).encoded())
                replies.append(try c.readReply(dataLength: 0))
                try c.send(NBDRequest(command: .write, cookie: 3, offset: size, length: 4096, payload: Array(junk.prefix(4096))).encoded())
                replies.append(try c.readReply(dataLength: 0))
                try c.send(NBDRequest(command: .write, cookie: 4, offset: UInt64.max - 4095, length: 8192, payload: junk).encoded())
                replies.append(try c.readReply(dataLength: 0))
                try c.send(NBDRequest(command: .writeZeroes, cookie: 5, offset: size - 4096, length: 8192).encoded())
                replies.append(try c.readReply(dataLength: 0))
                try c.send(NBDRequest(command: .trim, cookie: 6, offset: size, length: 4096).encoded())
                replies.append(try c.readReply(dataLength: 0))
                // A valid WRITE right after (the rejected payloads were consumed, not decoded as headers).
                try c.send(NBDRequest(command: .write, cookie: 7, offset: size - 8192, length: 8192, payload: fresh).encoded())
                replies.append(try c.readReply(dataLength: 0))
                replies.append(try c.read(cookie: 8, offset: size - 8192, length: 8192))
                return (exportSize, replies)
            }
            #expect(exportSize == size)
            #expect(replies.map(\.cookie) == [1, 2, 3, 4, 5, 6, 7, 8])
            #expect(replies.map(\.error) == [.einval, .enospc, .enospc, .enospc, .enospc, .einval, .none, .none])
            #expect(replies.last?.data == fresh)
            image.model.replaceSubrange((Int(size) - 8192)..<Int(size), with: fresh)
        }
    }

    @Test func oversizeWriteDropsTheConnection() async throws {
        try await PatternedExport.serve { image, socket in
            let closed = try await blocking {
                let c = try RawNBDClient(path: socket)
                try c.negotiate()
                let maximum = NBDExport.BlockSizes.default.maximum
                try c.send(NBDRequest(command: .write, cookie: 1, offset: 0, length: maximum + 512).encoded())
                // Whatever follows is never decoded: some junk that would be a valid header-sized chunk.
                _ = try? c.send([UInt8](repeating: 0xEE, count: 64 << 10))
                return c.closedByServer()
            }
            #expect(closed)
        }
    }

    @Test func clientVanishingMidHeaderOrMidPayloadWritesNothing() async throws {
        try await PatternedExport.serve { image, socket in
            try await blocking {
                // Half a header, then gone.
                var c = try RawNBDClient(path: socket)
                try c.negotiate()
                try c.send(Array(NBDRequest(command: .write, cookie: 1, offset: 0, length: 4096).encoded().prefix(13)))
                c.close()
                // A complete header and 40 KiB of a 64 KiB payload, then gone.
                c = try RawNBDClient(path: socket)
                try c.negotiate()
                try c.send(NBDRequest(command: .write, cookie: 2, offset: 1 << 20, length: 64 << 10).encoded())
                try c.send([UInt8](repeating: 0xEE, count: 40 << 10))
                c.close()
                // Same, but reset while the server waits (pipelined after a valid READ).
                c = try RawNBDClient(path: socket)
                try c.negotiate()
                try c.send(NBDRequest(command: .read, cookie: 3, offset: 0, length: 4096).encoded())
                try c.send(NBDRequest(command: .write, cookie: 4, offset: 2 << 20, length: 8192).encoded())
                try c.send([UInt8](repeating: 0xEE, count: 4096))
                c.close()
            }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    @Test func clientThatNeverReadsRepliesDoesNotBlockOthers() async throws {
        try await PatternedExport.serve { image, socket in
            // 512 pipelined 1 MiB READs = 512 MiB of replies that nobody reads: the server's
            // sends and its in-flight window fill up, and this connection stalls.
            let greedy = try await blocking { () -> RawNBDClient in
                let c = try RawNBDClient(path: socket, sendTimeout: .seconds(2))
                try c.negotiate()
                for i in 0..<512 {
                    let offset = UInt64(i % 8) << 20
                    do {
                        try c.send(NBDRequest(command: .read, cookie: UInt64(i), offset: offset, length: 1 << 20).encoded())
                    } catch RawNBDClient.Failure.timeout {
                        break  // the server stopped reading this client: that is the point
                    }
                }
                return c
            }
            let clock = ContinuousClock()
            let started = clock.now
            try await image.checkServedCorrectly()
            #expect(clock.now - started < .seconds(15), "another client was served while one stalled")
            // The stalled connection is really stalled (pending data, unread) — and then it goes.
            #expect(greedy.pendingBytes() > 0)
            greedy.close()
            try await Task.sleep(for: .milliseconds(300))
        }
    }
}

// MARK: - Support

/// An export whose image starts with pseudo-random content, and a model of what it must contain.
final class PatternedExport {
    let fixture: ExportFixture
    var model: [UInt8]
    private var rounds = 0

    init(size: Int = 8 << 20) throws {
        fixture = try ExportFixture(size: UInt64(size))
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        model = [UInt8](repeating: 0, count: size)
        model.withUnsafeMutableBytes { raw in
            let words = raw.bindMemory(to: UInt64.self)
            for i in words.indices {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17
                words[i] = state
            }
        }
        try Data(model).write(to: URL(fileURLWithPath: fixture.imagePath))
    }

    /// Serves a fresh export to `body`; afterwards checks that another client is served
    /// correctly and, once the server is gone, that the image holds exactly the accepted writes.
    static func serve(
        handshakeTimeout: Duration = .seconds(10), _ body: (PatternedExport, String) async throws -> Void
    ) async throws {
        let image = try PatternedExport()
        try await image.fixture.serve(handshakeTimeout: handshakeTimeout) { _ in
            try await body(image, image.fixture.socketPath)
            try await image.checkServedCorrectly()
        }
        try image.checkImageMatchesModel()
    }

    /// Another client is served correctly: a raw client writes and reads back, checks an
    /// untouched region against the model, and (optionally) qemu-io writes and verifies a pattern.
    func checkServedCorrectly(useQemuIO: Bool = true) async throws {
        rounds += 1
        let socket = fixture.socketPath
        let offset = 3 << 20 + rounds * 16384
        let data = (0..<8192).map { _ in UInt8.random(in: 0...255) }
        let untouched = Array(model[(5 << 20)..<((5 << 20) + 65536)])
        let (written, readBack, other) = try await blocking {
            let c = try RawNBDClient(path: socket)
            try c.negotiate()
            try c.send(NBDRequest(command: .write, flags: .fua, cookie: 100, offset: UInt64(offset), length: 8192, payload: data).encoded())
            let written = try c.readReply(dataLength: 0)
            let readBack = try c.read(cookie: 101, offset: UInt64(offset), length: 8192)
            let other = try c.read(cookie: 102, offset: 5 << 20, length: 65536)
            try c.send(NBDRequest(command: .disconnect, cookie: 103, offset: 0, length: 0).encoded())
            return (written, readBack, other)
        }
        #expect(written.error == .none && written.cookie == 100)
        #expect(readBack.error == .none && readBack.data == data, "a fresh client reads back what it wrote")
        #expect(other.error == .none && other.data == untouched, "untouched data reads back unchanged")
        if written.error == .none { model.replaceSubrange(offset..<(offset + 8192), with: data) }
        guard useQemuIO else { return }
        let pattern = UInt8(0x40 + rounds % 64)
        let qemuOffset = 6 << 20 + rounds * 65536
        _ = try await runDetached("/usr/bin/timeout", [
            "30", "/usr/bin/qemu-io", "-f", "raw",
            "-c", "write -P \(pattern) \(qemuOffset) 64k", "-c", "read -P \(pattern) \(qemuOffset) 64k", fixture.uri,
        ])
        model.replaceSubrange(qemuOffset..<(qemuOffset + 65536), with: repeatElement(pattern, count: 65536))
    }

    /// After the server is gone: the file holds exactly the accepted writes.
    func checkImageMatchesModel() throws {
        let contents = [UInt8](try Data(contentsOf: URL(fileURLWithPath: fixture.imagePath)))
        #expect(contents.count == model.count)
        guard contents != model else { return }
        let firstDifference = contents.withUnsafeBufferPointer { a in
            model.withUnsafeBufferPointer { b in (0..<min(a.count, b.count)).first { a[$0] != b[$0] } }
        }
        Issue.record("image differs from the accepted writes at byte \(firstDifference ?? -1)")
    }
}

/// Runs blocking socket code on its own thread, off the cooperative pool (and off the ring).
func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
    }
}

/// A deliberately simple NBD client on a blocking UNIX socket that can send anything at all.
/// Every receive has a timeout, so a server that never answers fails the test instead of hanging it.
final class RawNBDClient: @unchecked Sendable {
    enum Failure: Error, Equatable { case closed, timeout, errno(Int32), protocolViolation(String) }

    struct Reply: Sendable, Equatable {
        var error: NBD.ErrorCode
        var cookie: UInt64
        var data: [UInt8]
    }

    private(set) var fd: Int32

    init(path: String, receiveTimeout: Duration = .seconds(5), sendTimeout: Duration = .seconds(5)) throws {
        fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure.errno(errno) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: path.utf8.prefix(raw.count - 1))
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else {
            let e = errno
            Glibc.close(fd)
            throw Failure.errno(e)
        }
        setTimeout(SO_RCVTIMEO, receiveTimeout)
        setTimeout(SO_SNDTIMEO, sendTimeout)
    }

    deinit { close() }

    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    private func setTimeout(_ option: Int32, _ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        var tv = timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
        setsockopt(fd, SOL_SOCKET, option, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    static func u32(_ value: UInt32) -> [UInt8] {
        var out = [UInt8]()
        out.appendBigEndian(value)
        return out
    }

    func send(_ bytes: [UInt8]) throws {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + done, $0.count - done, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { throw Failure.timeout }
                if errno == EPIPE || errno == ECONNRESET { throw Failure.closed }
                throw Failure.errno(errno)
            }
            done += n
        }
    }

    func receive(_ count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = out.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress! + done, count - done, 0) }
            if n == 0 { throw Failure.closed }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { throw Failure.timeout }
                if errno == ECONNRESET { throw Failure.closed }
                throw Failure.errno(errno)
            }
            done += n
        }
        return out
    }

    /// True when the server closes this connection (EOF or reset) within the receive timeout;
    /// anything it still sends before that is read and dropped.
    func closedByServer() -> Bool {
        var scratch = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = scratch.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress!, $0.count, 0) }
            if n == 0 { return true }
            if n < 0 {
                if errno == EINTR { continue }
                return errno == ECONNRESET
            }
        }
    }

    /// Bytes the server sent that this client has not read.
    func pendingBytes() -> Int {
        var pending: Int32 = 0
        _ = withUnsafeMutablePointer(to: &pending) { ioctl(fd, UInt(FIONREAD), $0) }
        return Int(pending)
    }

    func readGreeting() throws {
        let g = try receive(18)
        guard g.readBigEndian(at: 0, as: UInt64.self) == NBD.nbdMagic,
              g.readBigEndian(at: 8, as: UInt64.self) == NBD.optionMagic,
              g.readBigEndian(at: 16, as: UInt16.self) == 3
        else { throw Failure.protocolViolation("bad greeting \(g)") }
    }

    func readOptionReply() throws -> NBDTestClient.OptionReply {
        let header = try receive(20)
        guard header.readBigEndian(at: 0, as: UInt64.self) == NBD.optionReplyMagic else {
            throw Failure.protocolViolation("bad option reply magic")
        }
        let length = Int(header.readBigEndian(at: 16, as: UInt32.self))
        return NBDTestClient.OptionReply(
            option: NBD.Option(rawValue: header.readBigEndian(at: 8)),
            type: NBD.OptionReplyType(rawValue: header.readBigEndian(at: 12)),
            data: try receive(length))
    }

    /// NBD_OPT_GO; returns the export size.
    func go(export: String) throws -> UInt64 {
        try send(NBDTestClient.option(.go, NBDTestClient.goData(export)))
        var size: UInt64?
        while true {
            let reply = try readOptionReply()
            if reply.type == .info, reply.data.count >= 12, reply.data.readBigEndian(at: 0, as: UInt16.self) == 0 {
                size = reply.data.readBigEndian(at: 2, as: UInt64.self)
            } else if reply.type == .ack {
                guard let size else { throw Failure.protocolViolation("GO acknowledged without NBD_INFO_EXPORT") }
                return size
            } else if reply.type.isError {
                throw Failure.protocolViolation("GO refused: \(reply.type.rawValue) \(String(decoding: reply.data, as: UTF8.self))")
            }
        }
    }

    /// Greeting, flags, GO for `export`; returns the export size.
    @discardableResult
    func negotiate(export: String = "disk0") throws -> UInt64 {
        try readGreeting()
        try send(Self.u32(3))
        return try go(export: export)
    }

    func readReply(dataLength: Int) throws -> Reply {
        let header = try receive(16)
        guard header.readBigEndian(at: 0, as: UInt32.self) == NBD.simpleReplyMagic else {
            throw Failure.protocolViolation("bad reply magic")
        }
        let error = NBD.ErrorCode(rawValue: header.readBigEndian(at: 4))
        let data = error == .none && dataLength > 0 ? try receive(dataLength) : []
        return Reply(error: error, cookie: header.readBigEndian(at: 8), data: data)
    }

    func read(cookie: UInt64, offset: UInt64, length: UInt32) throws -> Reply {
        try send(NBDRequest(command: .read, cookie: cookie, offset: offset, length: length).encoded())
        return try readReply(dataLength: Int(length))
    }
}
