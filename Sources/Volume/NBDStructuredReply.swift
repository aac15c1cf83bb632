/// Encoder for NBD structured reply chunks (`NBD_OPT_STRUCTURED_REPLY` negotiated): magic, flags,
/// type, cookie, length, then the payload. vmhad sends them for READ (data and hole chunks) and
/// BLOCK_STATUS, and an error chunk when either fails; other commands keep simple replies, which
/// the protocol allows.
public enum NBDStructuredReply {
    /// The 20-byte chunk header.
    public static func header(cookie: UInt64, type: NBD.ReplyType, done: Bool, length: Int) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(NBD.structuredReplyHeaderSize)
        out.appendBigEndian(NBD.structuredReplyMagic)
        out.appendBigEndian(done ? NBD.replyFlagDone : 0)
        out.appendBigEndian(type.rawValue)
        out.appendBigEndian(cookie)
        out.appendBigEndian(UInt32(length))
        return out
    }

    /// `NBD_REPLY_TYPE_OFFSET_HOLE`: `length` bytes at `offset` read as zeroes.
    public static func hole(cookie: UInt64, offset: UInt64, length: UInt32, done: Bool) -> [UInt8] {
        var out = header(cookie: cookie, type: .offsetHole, done: done, length: 12)
        out.appendBigEndian(offset)
        out.appendBigEndian(length)
        return out
    }

    /// `NBD_REPLY_TYPE_BLOCK_STATUS` for one context: descriptors of (length, flags).
    public static func blockStatus(cookie: UInt64, context: UInt32, extents: [(length: UInt32, flags: UInt32)], done: Bool) -> [UInt8] {
        var out = header(cookie: cookie, type: .blockStatus, done: done, length: 4 + 8 * extents.count)
        out.appendBigEndian(context)
        for extent in extents {
            out.appendBigEndian(extent.length)
            out.appendBigEndian(extent.flags)
        }
        return out
    }

    /// `NBD_REPLY_TYPE_ERROR`, the last chunk: the error and a message for people.
    public static func error(cookie: UInt64, _ code: NBD.ErrorCode, message: String) -> [UInt8] {
        let text = Array(message.utf8.prefix(4096))
        var out = header(cookie: cookie, type: .error, done: true, length: 6 + text.count)
        out.appendBigEndian(code.rawValue)
        out.appendBigEndian(UInt16(text.count))
        out.append(contentsOf: text)
        return out
    }

    /// `NBD_REPLY_TYPE_NONE` with the done flag: success, nothing more.
    public static func done(cookie: UInt64) -> [UInt8] {
        header(cookie: cookie, type: .none, done: true, length: 0)
    }
}
