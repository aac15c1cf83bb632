/// Encoder for NBD simple replies: magic, error, cookie — followed, for a
/// successful READ, by exactly `length` bytes of data.
///
/// The data is not copied into the header buffer on purpose: the caller sends
/// ``header`` and the read buffer with one vectored write.
public struct NBDSimpleReply: Sendable, Hashable {
    public var cookie: UInt64
    public var error: NBD.ErrorCode

    public init(cookie: UInt64, error: NBD.ErrorCode = .none) {
        self.cookie = cookie
        self.error = error
    }

    /// Appends the 16-byte reply header to `buffer`.
    public func encode(into buffer: inout [UInt8]) {
        buffer.appendBigEndian(NBD.simpleReplyMagic)
        buffer.appendBigEndian(error.rawValue)
        buffer.appendBigEndian(cookie)
    }

    /// The 16-byte reply header.
    public var header: [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(NBD.simpleReplyHeaderSize)
        encode(into: &out)
        return out
    }

    /// Decodes a reply header (for tests and in-process clients); `nil` if
    /// fewer than 16 bytes or the magic is wrong.
    public init?(header bytes: some Collection<UInt8>) {
        let b = Array(bytes.prefix(NBD.simpleReplyHeaderSize))
        guard b.count == NBD.simpleReplyHeaderSize,
              b.readBigEndian(at: 0, as: UInt32.self) == NBD.simpleReplyMagic else { return nil }
        self.error = NBD.ErrorCode(rawValue: b.readBigEndian(at: 4))
        self.cookie = b.readBigEndian(at: 8)
    }
}
