import Foundation
import Testing
@testable import Volume

#if canImport(Glibc)
import Glibc
#endif

/// Structured replies, metadata contexts and NBD_CMD_BLOCK_STATUS (issue 18): outside clients
/// (nbdinfo, qemu-img, nbdcopy, qemu-io) on a sparse export, then hostile and edge-case requests
/// from a raw client, each followed by a well-served client.
@Suite("NBD block status", .serialized)
struct NBDBlockStatusTests {
    /// 64 MiB, data at 8 MiB (2 MiB) and at 32 000 KiB (4 KiB), holes elsewhere.
    static func sparseExport() throws -> ExportFixture {
        let fixture = try ExportFixture(size: 64 << 20)
        for (offset, length) in [(8 << 20, 2 << 20), (32_768_000, 4096)] {
            let fd = open(fixture.imagePath, O_WRONLY)
            let data = (0..<length).map { _ in UInt8.random(in: 1...255) }
            _ = data.withUnsafeBytes { pwrite(fd, $0.baseAddress, length, off_t(offset)) }
            close(fd)
        }
        return fixture
    }

    @Test func outsideClientsSeeTheHolesAndCopyThemAsHoles() async throws {
        let fixture = try Self.sparseExport()
        try await fixture.serve { _ in
            let map = try await runDetached("/usr/bin/nbdinfo", ["--map", fixture.uri])
            let rows = map.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).prefix(3).map(String.init) }
            #expect(rows == [
                ["0", "8388608", "3"], ["8388608", "2097152", "0"], ["10485760", "22282240", "3"],
                ["32768000", "4096", "0"], ["32772096", "34336768", "3"],
            ], "nbdinfo --map:\n\(map)")
            // qemu-img's map of the export agrees with its map of the file itself.
            let overNBD = try await runDetached("/usr/bin/qemu-img", ["map", "--output=json", "-f", "raw", fixture.uri])
            let ofFile = try await runDetached("/usr/bin/qemu-img", ["map", "--output=json", "-f", "raw", fixture.imagePath])
            #expect(overNBD == ofFile, "over NBD:\n\(overNBD)\nthe file:\n\(ofFile)")
            // nbdcopy reads through structured replies: the copy is identical and as sparse.
            let copy = fixture.directory + "/copy.img"
            _ = try await runDetached("/usr/bin/nbdcopy", [fixture.uri, copy])
            #expect(FileManager.default.contentsEqual(atPath: copy, andPath: fixture.imagePath))
            #expect(try allocatedKiB(copy) <= allocatedKiB(fixture.imagePath) + 64, "the copy's holes stayed holes")
            // QEMU's NBD client reads data and holes right.
            let io = try await runDetached("/usr/bin/qemu-io", ["-f", "raw", "-c", "read -P 0 0 8M", "-c", "read -P 0 10M 1M", fixture.uri])
            #expect(!io.contains("Pattern verification failed"), "\(io)")
        }
    }

    @Test func negotiationEdgeCasesGetTheRightReplies() async throws {
        let fixture = try Self.sparseExport()
        let socket = fixture.socketPath
        try await fixture.serve { _ in
            try await blocking {
                // Meta contexts before structured replies; structured replies with data.
                var c = try RawNBDClient(path: socket)
                try c.readGreeting()
                try c.send(RawNBDClient.u32(3))
                try c.send(NBDTestClient.option(.setMetaContext, metaData("disk0", ["base:allocation"])))
                #expect(try c.readOptionReply().type == .errInvalid)
                try c.send(NBDTestClient.option(.structuredReply, [1]))
                #expect(try c.readOptionReply().type == .errInvalid)
                try c.send(NBDTestClient.option(.structuredReply))
                #expect(try c.readOptionReply().type == .ack)
                // LIST with no query: everything, id 0. An unknown export; a count that lies.
                try c.send(NBDTestClient.option(.listMetaContext, metaData("disk0", [])))
                var reply = try c.readOptionReply()
                #expect(reply.type == .metaContext && reply.data == RawNBDClient.u32(0) + Array("base:allocation".utf8))
                #expect(try c.readOptionReply().type == .ack)
                try c.send(NBDTestClient.option(.setMetaContext, metaData("nope", ["base:allocation"])))
                #expect(try c.readOptionReply().type == .errUnknown)
                var lying = metaData("disk0", ["base:allocation"])
                lying.replaceSubrange((4 + 5)..<(8 + 5), with: RawNBDClient.u32(2))
                try c.send(NBDTestClient.option(.setMetaContext, lying))
                #expect(try c.readOptionReply().type == .errInvalid)
                // SET: the known context gets id 1, an unknown one nothing.
                try c.send(NBDTestClient.option(.setMetaContext, metaData("disk0", ["qemu:dirty-bitmap:x", "base:allocation"])))
                reply = try c.readOptionReply()
                #expect(reply.type == .metaContext && reply.data == RawNBDClient.u32(1) + Array("base:allocation".utf8))
                #expect(try c.readOptionReply().type == .ack)
                _ = try c.go(export: "disk0")
                // Length 0, past the end: EINVAL error chunks; REQ_ONE: one extent; then all of them.
                try c.send(NBDRequest(command: .blockStatus, cookie: 1, offset: 0, length: 0).encoded())
                var chunk = try c.readChunk()
                #expect(chunk.type == .error && chunk.done && chunk.cookie == 1 && chunk.payload.prefix(4) == RawNBDClient.u32(22)[...])
                try c.send(NBDRequest(command: .blockStatus, cookie: 2, offset: 60 << 20, length: 8 << 20).encoded())
                chunk = try c.readChunk()
                #expect(chunk.type == .error && chunk.cookie == 2)
                try c.send(NBDRequest(command: .blockStatus, flags: .reqOne, cookie: 3, offset: 0, length: 64 << 20).encoded())
                chunk = try c.readChunk()
                #expect(chunk.type == .blockStatus && chunk.done && chunk.payload == RawNBDClient.u32(1) + RawNBDClient.u32(8 << 20) + RawNBDClient.u32(3))
                try c.send(NBDRequest(command: .blockStatus, cookie: 4, offset: 9 << 20, length: 2 << 20).encoded())
                chunk = try c.readChunk()
                #expect(chunk.payload == RawNBDClient.u32(1) + RawNBDClient.u32(1 << 20) + RawNBDClient.u32(0) + RawNBDClient.u32(1 << 20) + RawNBDClient.u32(3))
                // A structured READ across data and a hole: a data chunk, then a hole chunk, done.
                try c.send(NBDRequest(command: .read, cookie: 5, offset: 10 << 20 - 4096, length: 8192).encoded())
                let data = try c.readChunk()
                let hole = try c.readChunk()
                #expect(data.type == .offsetData && !data.done && data.payload.count == 8 + 4096)
                #expect(hole.type == .offsetHole && hole.done && hole.payload == [0, 0, 0, 0, 0, 0xA0, 0, 0] + RawNBDClient.u32(4096))
                try c.send(NBDRequest(command: .disconnect, cookie: 6, offset: 0, length: 0).encoded())
                c.close()

                // Structured replies but no context selected: BLOCK_STATUS is EINVAL.
                c = try RawNBDClient(path: socket)
                try c.readGreeting()
                try c.send(RawNBDClient.u32(3))
                try c.send(NBDTestClient.option(.structuredReply))
                _ = try c.readOptionReply()
                try c.send(NBDTestClient.option(.setMetaContext, metaData("disk0", ["x-unknown:thing"])))
                #expect(try c.readOptionReply().type == .ack, "nothing selected is no error")
                _ = try c.go(export: "disk0")
                try c.send(NBDRequest(command: .blockStatus, cookie: 7, offset: 0, length: 4096).encoded())
                chunk = try c.readChunk()
                #expect(chunk.type == .error && chunk.cookie == 7)
                c.close()

                // No structured replies: BLOCK_STATUS gets a simple EINVAL, READ a simple reply.
                c = try RawNBDClient(path: socket)
                try c.negotiate()
                try c.send(NBDRequest(command: .blockStatus, cookie: 8, offset: 0, length: 4096).encoded())
                #expect(try c.readReply(dataLength: 0).error == .einval)
                #expect(try c.read(cookie: 9, offset: 8 << 20, length: 4096).error == .none)
            }
            // And an outside client is still served.
            let map = try await runDetached("/usr/bin/nbdinfo", ["--map", "--totals", fixture.uri])
            #expect(map.contains("hole,zero"), "\(map)")
        }
    }
}

/// LIST/SET_META_CONTEXT data: export name, query count, queries.
private func metaData(_ export: String, _ queries: [String]) -> [UInt8] {
    var out = RawNBDClient.u32(UInt32(export.utf8.count)) + Array(export.utf8) + RawNBDClient.u32(UInt32(queries.count))
    for query in queries { out += RawNBDClient.u32(UInt32(query.utf8.count)) + Array(query.utf8) }
    return out
}

private func allocatedKiB(_ path: String) throws -> Int {
    var info = stat()
    guard stat(path, &info) == 0 else { throw POSIXError(.ENOENT) }
    return Int(info.st_blocks) / 2
}

extension RawNBDClient {
    struct Chunk {
        var done: Bool
        var type: NBD.ReplyType
        var cookie: UInt64
        var payload: [UInt8]
    }

    /// One structured reply chunk.
    func readChunk() throws -> Chunk {
        let header = try receive(NBD.structuredReplyHeaderSize)
        guard header.readBigEndian(at: 0, as: UInt32.self) == NBD.structuredReplyMagic else {
            throw Failure.protocolViolation("bad structured reply magic")
        }
        let length = Int(header.readBigEndian(at: 16, as: UInt32.self))
        return Chunk(
            done: header.readBigEndian(at: 4, as: UInt16.self) & NBD.replyFlagDone != 0,
            type: NBD.ReplyType(rawValue: header.readBigEndian(at: 6)), cookie: header.readBigEndian(at: 8),
            payload: try receive(length))
    }
}
