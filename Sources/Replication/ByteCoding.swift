// Big-endian integer helpers for the peer wire format. The peer protocol is
// big-endian ("network byte order") like NBD, so a packet capture reads the
// same way as the NBD side; the byte swaps cost nothing measurable next to the
// copies of the data itself.

extension Array where Element == UInt8 {
    @inlinable
    mutating func appendBigEndian<T: FixedWidthInteger>(_ value: T) {
        var v = value.bigEndian
        Swift.withUnsafeBytes(of: &v) { self.append(contentsOf: $0) }
    }

    /// Appends `count` length-prefixed (u16) UTF-8 bytes of `text`.
    @inlinable
    mutating func appendShortText(_ text: String) {
        let utf8 = text.utf8
        appendBigEndian(UInt16(truncatingIfNeeded: utf8.count))
        append(contentsOf: utf8)
    }

    /// Overwrites `MemoryLayout<T>.size` bytes at `offset` with `value` big-endian.
    @inlinable
    mutating func storeBigEndian<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        withUnsafeMutableBytes { raw in
            raw.storeBytes(of: value.bigEndian, toByteOffset: offset, as: T.self)
        }
    }
}

extension UnsafeRawBufferPointer {
    /// Reads a big-endian integer at `offset`; the caller has checked bounds.
    @inlinable
    func readBigEndian<T: FixedWidthInteger>(at offset: Int, as: T.Type = T.self) -> T {
        T(bigEndian: loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}

/// Sequential reader over one frame's payload. Every read is bounds checked and
/// throws ``PeerProtocolError/truncatedPayload(type:field:)`` naming the field,
/// so malformed input can never trap.
struct PayloadReader {
    let type: PeerFrameType
    let bytes: ArraySlice<UInt8>
    var index: Int

    init(type: PeerFrameType, bytes: ArraySlice<UInt8>) {
        self.type = type
        self.bytes = bytes
        self.index = bytes.startIndex
    }

    var remaining: Int { bytes.endIndex - index }

    mutating func read<T: FixedWidthInteger>(_: T.Type = T.self, _ field: String) throws(PeerProtocolError) -> T {
        let size = MemoryLayout<T>.size
        guard remaining >= size else { throw .truncatedPayload(type: type, field: field) }
        var v: T = 0
        for i in index..<(index + size) { v = (v << 8) | T(bytes[i]) }
        index += size
        return v
    }

    mutating func readBytes(_ count: Int, _ field: String) throws(PeerProtocolError) -> ArraySlice<UInt8> {
        guard count >= 0, remaining >= count else { throw .truncatedPayload(type: type, field: field) }
        defer { index += count }
        return bytes[index..<(index + count)]
    }

    /// The rest of the payload, without copying.
    mutating func readRest() -> ArraySlice<UInt8> {
        defer { index = bytes.endIndex }
        return bytes[index...]
    }

    /// A u16-length-prefixed UTF-8 string of at most `maximum` bytes. Invalid
    /// UTF-8 is rejected rather than repaired so decoding stays exact (the
    /// re-encoded frame equals the received one).
    mutating func readText(_ field: String, maximum: Int, allowEmpty: Bool) throws(PeerProtocolError) -> String {
        let count = Int(try read(UInt16.self, "\(field) length"))
        guard count <= maximum, allowEmpty || count > 0 else {
            throw .fieldOutOfRange(type: type, field: "\(field) length", value: "\(count)")
        }
        let raw = try readBytes(count, field)
        guard let text = String(validating: raw, as: UTF8.self) else {
            throw .invalidText(type: type, field: field)
        }
        return text
    }

    func finish() throws(PeerProtocolError) {
        guard remaining == 0 else { throw .trailingBytes(type: type, count: remaining) }
    }
}

/// A chunk of a byte string sent in pieces (BITMAP, SUPPORT_DATA): byte offset u64, total length
/// u64, the chunk; offset + chunk ≤ total.
extension PayloadReader {
    mutating func readChunk() throws(PeerProtocolError) -> (byteOffset: UInt64, totalLength: UInt64, chunk: ArraySlice<UInt8>) {
        let byteOffset = try read(UInt64.self, "byte offset")
        let totalLength = try read(UInt64.self, "total length")
        let chunk = readRest()
        guard byteOffset <= totalLength, UInt64(chunk.count) <= totalLength - byteOffset else {
            throw .fieldOutOfRange(type: type, field: "byte offset+count", value: "\(byteOffset)+\(chunk.count) > total \(totalLength)")
        }
        return (byteOffset, totalLength, chunk)
    }
}

extension Array where Element == UInt8 {
    mutating func appendChunk(byteOffset: UInt64, totalLength: UInt64, _ chunk: ArraySlice<UInt8>) {
        appendBigEndian(byteOffset)
        appendBigEndian(totalLength)
        append(contentsOf: chunk)
    }
}
