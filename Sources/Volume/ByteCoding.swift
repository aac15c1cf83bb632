// Fixed-width integer encoding helpers shared by the codecs in this module.
//
// NBD is big-endian ("network byte order") on the wire; our on-disk formats are
// little-endian because every host we run on is, and the bitmap is serialized
// as raw UInt64 words. Both are spelled out at each call site.

extension Array where Element == UInt8 {
    @inlinable
    mutating func appendBigEndian<T: FixedWidthInteger>(_ value: T) {
        var v = value.bigEndian
        Swift.withUnsafeBytes(of: &v) { self.append(contentsOf: $0) }
    }

    @inlinable
    mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
        var v = value.littleEndian
        Swift.withUnsafeBytes(of: &v) { self.append(contentsOf: $0) }
    }

    /// Reads a big-endian integer at `offset`; the caller has checked bounds.
    @inlinable
    func readBigEndian<T: FixedWidthInteger>(at offset: Int, as: T.Type = T.self) -> T {
        var v: T = 0
        for i in 0..<MemoryLayout<T>.size {
            v = (v << 8) | T(self[offset + i])
        }
        return v
    }

    /// Reads a little-endian integer at `offset`; the caller has checked bounds.
    @inlinable
    func readLittleEndian<T: FixedWidthInteger>(at offset: Int, as: T.Type = T.self) -> T {
        var v: T = 0
        for i in (0..<MemoryLayout<T>.size).reversed() {
            v = (v << 8) | T(self[offset + i])
        }
        return v
    }

    /// Overwrites `MemoryLayout<T>.size` bytes at `offset` with `value` little-endian.
    @inlinable
    mutating func storeLittleEndian<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        var v = value.littleEndian
        Swift.withUnsafeBytes(of: &v) { raw in
            for i in 0..<raw.count { self[offset + i] = raw[i] }
        }
    }
}
