import SystemPackage

/// The format of an image file, which decides how large its NBD export must be.
///
/// vmha replicates the container file byte for byte and never interprets guest data; the format
/// matters only because QEMU's qcow2 driver, running on top of the NBD export, allocates clusters
/// inside the export and cannot grow it.
public enum ImageFormat: String, Sendable, Codable {
    case raw
    case qcow2

    static let qcow2Magic: [UInt8] = [0x51, 0x46, 0x49, 0xFB]  // "QFI\xfb"

    /// Detects qcow2 by its magic; everything else is raw.
    public static func detect(header: [UInt8]) -> ImageFormat {
        header.count >= 4 && Array(header[0..<4]) == qcow2Magic ? .qcow2 : .raw
    }

    /// The export size for a qcow2 container: an upper bound of the file size once every
    /// cluster of the virtual disk is allocated (data, L1/L2 tables, refcount table and blocks,
    /// header), as `qemu-img measure` computes, plus a margin for snapshots-free metadata churn.
    /// The file is extended sparsely to this size, so the tail costs nothing until used.
    public static func qcow2ExportSize(header: [UInt8], fileSize: UInt64) throws(VolumeError) -> UInt64 {
        func be<T: FixedWidthInteger>(_ offset: Int, _: T.Type) -> T {
            header[offset..<offset + MemoryLayout<T>.size].reduce(T(0)) { $0 << 8 | T($1) }
        }
        guard header.count >= 104 else { throw .imageUnusable(path: "", reason: "qcow2 header is truncated") }
        let clusterBits = be(20, UInt32.self)
        let virtualSize = be(24, UInt64.self)
        guard (9...21).contains(clusterBits) else {
            throw .imageUnusable(path: "", reason: "qcow2 cluster_bits \(clusterBits) is invalid")
        }
        let version = be(4, UInt32.self)
        let refcountOrder: UInt64 = version >= 3 ? UInt64(be(96, UInt32.self)) : 4
        let cluster = UInt64(1) << clusterBits
        func clusters(_ bytes: UInt64) -> UInt64 { (bytes + cluster - 1) / cluster }
        let dataClusters = clusters(virtualSize)
        let l2Clusters = clusters(dataClusters * 8)
        let l1Clusters = clusters(l2Clusters * 8)
        var total = 1 + dataClusters + l2Clusters + l1Clusters
        // Refcounts cover themselves too: iterate to a fixed point.
        let refcountBits = UInt64(1) << refcountOrder
        var refcountBlocks: UInt64 = 0, refcountTable: UInt64 = 0
        for _ in 0..<4 {
            refcountBlocks = clusters((total + refcountBlocks + refcountTable) * refcountBits / 8)
            refcountTable = clusters(refcountBlocks * 8)
        }
        total += refcountBlocks + refcountTable
        let bound = total * cluster + 16 * cluster
        return max(fileSize, bound)
    }
}
