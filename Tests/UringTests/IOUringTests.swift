import Foundation
import Logging
import Sockets
import SystemCalls
import SystemPackage
import Testing
@testable import Uring

#if canImport(Glibc)
import Glibc
#endif

/// A temporary file with O_DIRECT-aligned buffers, removed at the end of the test.
final class ScratchFile {
    let path: String
    let fd: FileDescriptor

    init(size: Int, direct: Bool = false) throws {
        path = NSTemporaryDirectory() + "/vmha-uring-\(UUID().uuidString)"
        var options: FileDescriptor.OpenOptions = [.create, .truncate]
        if direct { options.insert(.direct) }
        fd = try FileDescriptor.open(path, .readWrite, options: options, permissions: [.ownerReadWrite])
        try Syscall.call("ftruncate") { ftruncate(fd.rawValue, off_t(size)) }
    }

    deinit {
        try? fd.close()
        unlink(path)
    }
}

func alignedBuffer(_ size: Int, fill: UInt8? = nil) -> UnsafeMutableRawBufferPointer {
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 4096)
    if let fill { buffer.initializeMemory(as: UInt8.self, repeating: fill) }
    return buffer
}

func withRing<T>(_ body: (IOUring) async throws -> T) async throws -> T {
    let ring = try IOUring(logger: Logger(label: "test"))
    do {
        let result = try await body(ring)
        await ring.shutdown()
        return result
    } catch {
        await ring.shutdown()
        throw error
    }
}

@Suite("IOUring")
struct IOUringTests {
    @Test func directWriteThenReadRoundTrips() async throws {
        let file = try ScratchFile(size: 1 << 20, direct: true)
        try await withRing { (ring: IOUring) in
            let out = alignedBuffer(8192, fill: 0xA5)
            let back = alignedBuffer(8192, fill: 0)
            defer { out.deallocate(); back.deallocate() }
            let written = try await ring.write(.file(file.fd), from: UnsafeRawBufferPointer(out), at: 65536, durable: true)
            #expect(written == 8192)
            let read = try await ring.read(.file(file.fd), into: back, at: 65536)
            #expect(read == 8192)
            #expect(memcmp(out.baseAddress!, back.baseAddress!, 8192) == 0)
            try await ring.fsync(.file(file.fd))
        }
    }

    @Test func vectoredIOSpansBuffers() async throws {
        let file = try ScratchFile(size: 1 << 16)
        try await withRing { (ring: IOUring) in
            let a = alignedBuffer(4096, fill: 1), b = alignedBuffer(4096, fill: 2)
            let c = alignedBuffer(8192, fill: 0)
            defer { a.deallocate(); b.deallocate(); c.deallocate() }
            let n = try await ring.writev(.file(file.fd), from: [UnsafeRawBufferPointer(a), UnsafeRawBufferPointer(b)], at: 0)
            #expect(n == 8192)
            let first = UnsafeMutableRawBufferPointer(rebasing: c[0..<4096])
            let second = UnsafeMutableRawBufferPointer(rebasing: c[4096..<8192])
            let r = try await ring.readv(.file(file.fd), into: [second, first], at: 0)
            #expect(r == 8192)
            #expect(second.allSatisfy { $0 == 1 } && first.allSatisfy { $0 == 2 })
        }
    }

    @Test func punchHoleAndZeroRangeReadBackAsZeroes() async throws {
        let file = try ScratchFile(size: 1 << 20)
        try await withRing { (ring: IOUring) in
            let data = alignedBuffer(1 << 20, fill: 0xFF)
            defer { data.deallocate() }
            try await ring.writeFully(.file(file.fd), from: UnsafeRawBufferPointer(data), at: 0)
            try await ring.punchHole(.file(file.fd), offset: 0, length: 65536)
            try await ring.zeroRange(.file(file.fd), offset: 131072, length: 65536)
            let n = try await ring.readFully(.file(file.fd), into: data, at: 0)
            #expect(n == 1 << 20)
            #expect(data[0..<65536].allSatisfy { $0 == 0 })
            #expect(data[65536..<131072].allSatisfy { $0 == 0xFF })
            #expect(data[131072..<196608].allSatisfy { $0 == 0 })
            var st = stat()
            try Syscall.call("fstat") { fstat(file.fd.rawValue, &st) }
            #expect(st.st_size == 1 << 20, "KEEP_SIZE must not change the file size")
        }
    }

    @Test func registeredFilesAndBuffers() async throws {
        let file = try ScratchFile(size: 1 << 16, direct: true)
        try await withRing { (ring: IOUring) in
            let pool = alignedBuffer(16384, fill: 7)
            defer { pool.deallocate() }
            try await ring.registerBuffers([pool])
            try await ring.registerFiles([file.fd])
            let head = UnsafeMutableRawBufferPointer(rebasing: pool[0..<4096])
            let tail = UnsafeMutableRawBufferPointer(rebasing: pool[8192..<12288])
            tail.initializeMemory(as: UInt8.self, repeating: 0)
            #expect(try await ring.writeFixed(.registered(0), from: UnsafeRawBufferPointer(head), at: 4096, bufferIndex: 0) == 4096)
            #expect(try await ring.readFixed(.registered(0), into: tail, at: 4096, bufferIndex: 0) == 4096)
            #expect(tail.allSatisfy { $0 == 7 })
            try await ring.unregisterFiles()
            try await ring.unregisterBuffers()
        }
    }

    @Test func errorsAreTypedErrno() async throws {
        try await withRing { (ring: IOUring) in
            let buffer = alignedBuffer(4096)
            defer { buffer.deallocate() }
            await #expect(throws: Errno.badFileDescriptor) {
                _ = try await ring.read(.file(FileDescriptor(rawValue: 987_654)), into: buffer, at: 0)
            }
            // A write of an unaligned length with O_DIRECT fails with EINVAL, not a crash.
            let file = try ScratchFile(size: 8192, direct: true)
            await #expect(throws: Errno.invalidArgument) {
                _ = try await ring.write(.file(file.fd), from: UnsafeRawBufferPointer(rebasing: buffer[0..<100]), at: 0)
            }
        }
    }

    @Test func socketSendReceiveAndAccept() async throws {
        try await withRing { (ring: IOUring) in
            let path = NSTemporaryDirectory() + "/vmha-uring-\(UUID().uuidString.prefix(8)).sock"
            defer { unlink(path) }
            let listener = try UnixSocket.listen(path: path, backlog: 4)
            defer { try? listener.close() }
            async let accepted = ring.accept(.file(listener))
            let client = try UnixSocket.socket()
            defer { try? client.close() }
            try await UnixSocket.withAddress(path) { address in try await ring.connect(.file(client), to: address) }
            let server = try await accepted
            defer { try? server.close() }
            let message = Array("hello over io_uring".utf8)
            try await ring.sendAll(.file(client), bytes: message)
            let inbox = alignedBuffer(64)
            defer { inbox.deallocate() }
            let n = try await ring.recv(.file(server), into: inbox)
            #expect(Array(inbox[0..<n]) == message)
            try client.close()
            #expect(try await ring.recv(.file(server), into: inbox) == 0, "EOF after the peer closed")
        }
    }

    @Test func cancellingATaskCancelsItsRequest() async throws {
        try await withRing { (ring: IOUring) in
            var fds: [Int32] = [0, 0]
            try Syscall.call("socketpair") { socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) }
            defer { close(fds[0]); close(fds[1]) }
            let quiet = FileDescriptor(rawValue: fds[0])
            let start = ContinuousClock.now
            let task = Task {
                let buffer = alignedBuffer(16)
                defer { buffer.deallocate() }
                return try await ring.recv(.file(quiet), into: buffer)
            }
            try await Task.sleep(for: .milliseconds(50))
            task.cancel()
            await #expect(throws: Errno.canceled) { try await task.value }
            // A bound on "returns at all" (the recv would wait forever), not a speed claim: a busy
            // machine may delay the resumption by seconds.
            #expect(ContinuousClock.now - start < .seconds(30))

            // Cancelled before it was enqueued: completes at once with ECANCELED.
            let early = Task {
                withUnsafeCurrentTask { $0?.cancel() }
                try await ring.sleep(nanoseconds: 10_000_000_000)
            }
            await #expect(throws: Errno.canceled) { try await early.value }
        }
    }

    @Test func timeoutSleepsOnTheRing() async throws {
        try await withRing { (ring: IOUring) in
            let start = ContinuousClock.now
            try await ring.sleep(nanoseconds: 50_000_000)
            let elapsed = ContinuousClock.now - start
            #expect(elapsed >= .milliseconds(45) && elapsed < .seconds(30))
        }
    }

    @Test func manyConcurrentRequestsAllComplete() async throws {
        let file = try ScratchFile(size: 4096 * 512)
        try await withRing { (ring: IOUring) in
            let fd = file.fd
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<512 {
                    group.addTask {
                        let buffer = alignedBuffer(4096, fill: UInt8(truncatingIfNeeded: index))
                        defer { buffer.deallocate() }
                        _ = try await ring.write(.file(fd), from: UnsafeRawBufferPointer(buffer), at: UInt64(index * 4096))
                        try await ring.nop()
                    }
                }
                try await group.waitForAll()
            }
            let all = alignedBuffer(4096 * 512)
            defer { all.deallocate() }
            #expect(try await ring.readFully(.file(fd), into: all, at: 0) == 4096 * 512)
            for index in 0..<512 {
                #expect(all[index * 4096] == UInt8(truncatingIfNeeded: index))
            }
        }
    }

    @Test func tasksPreferringTheRingRunOnItsOwnerThread() async throws {
        let file = try ScratchFile(size: 4096 * 64)
        try await withRing { ring in
            let fd = file.fd
            let onOwner = try await withThrowingTaskGroup(of: Bool.self) { group in
                for index in 0..<64 {
                    group.addTask(executorPreference: ring) {
                        let buffer = alignedBuffer(4096, fill: UInt8(index))
                        defer { buffer.deallocate() }
                        _ = try await ring.write(.file(fd), from: UnsafeRawBufferPointer(buffer), at: UInt64(index * 4096))
                        return ring.isOwnerThread
                    }
                }
                return try await group.reduce(into: Set<Bool>()) { $0.insert($1) }
            }
            #expect(onOwner == [true])
            #expect(!ring.isOwnerThread)
        }
    }

    @Test func shutdownDrainsInFlightRequestsAndRefusesNewOnes() async throws {
        let ring = try IOUring(logger: Logger(label: "test"))
        let sleeper = Task { try await ring.sleep(nanoseconds: 100_000_000) }
        try await Task.sleep(for: .milliseconds(20))
        await ring.shutdown()
        // The in-flight timeout completed normally before the ring went away.
        try await sleeper.value
        await #expect(throws: Errno.socketShutdown) { try await ring.nop() }
        await ring.shutdown()
    }
}
