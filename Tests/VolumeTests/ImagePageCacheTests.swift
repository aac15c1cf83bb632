import Foundation
import Logging
import SystemCalls
import SystemPackage
import Testing
import Uring
@testable import Volume

#if canImport(Glibc)
import Glibc
#endif

/// Opening a volume writes back and drops the image's cached pages, so that O_DIRECT writes over
/// them need not fall back to io_uring's worker threads (a profile of 4 KiB random writes through
/// a replicating export over a freshly written image: 12 % of the CPU in io-wq workers doing
/// those writes; with the pages dropped at open, none).
@Suite("Image page cache")
struct ImagePageCacheTests {
    /// Pages of `path` in the page cache (mincore over a mapping that touches none of them).
    static func residentPages(_ path: String) throws -> Int {
        let fd = try FileDescriptor.open(path, .readOnly)
        defer { try? fd.close() }
        let size = Int(try fd.seek(offset: 0, from: .end))
        guard let map = mmap(nil, size, PROT_READ, MAP_SHARED, fd.rawValue, 0), map != MAP_FAILED else { throw Errno(rawValue: errno) }
        defer { munmap(map, size) }
        var vector = [UInt8](repeating: 0, count: (size + 4095) / 4096)
        try Syscall.call("mincore") { mincore(map, size, &vector) }
        return vector.filter { $0 & 1 == 1 }.count
    }

    @Test func openingDropsTheImagesCachedPagesAndKeepsItsData() async throws {
        // Not under /tmp, which may be tmpfs (whose pages are the file and cannot be dropped).
        let directory = "/var/tmp/vmha-cache-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let image = directory + "/image"
        let data = Data((0..<(8 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 13) })
        try data.write(to: URL(fileURLWithPath: image))  // through the page cache, not yet on disk
        let before = try Self.residentPages(image)
        #expect(before > 1000, "the freshly written image is cached: \(before) pages")

        let ring = try IOUring(logger: Logger(label: "test"))
        defer { Task { await ring.shutdown() } }
        let volume = try await LocalVolume.open(
            .init(name: "d0", imagePath: image, metadataPath: directory + "/image.vmha"), ring: ring, logger: Logger(label: "test"))
        #expect(try Self.residentPages(image) == 0, "cached pages left after open")
        try await volume.close()
        #expect(FileManager.default.contents(atPath: image) == data, "written back before being dropped")
    }
}
