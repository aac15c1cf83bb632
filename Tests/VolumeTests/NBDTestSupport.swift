@testable import Volume

/// Minimal client-side encoders/decoders used to drive the server state machines.
enum NBDTestClient {
    static func option(_ option: NBD.Option, _ data: [UInt8] = [], magic: UInt64 = NBD.optionMagic) -> [UInt8] {
        var out = [UInt8]()
        out.appendBigEndian(magic)
        out.appendBigEndian(option.rawValue)
        out.appendBigEndian(UInt32(data.count))
        out.append(contentsOf: data)
        return out
    }

    static func goData(_ name: String, infos: [NBD.InfoType] = []) -> [UInt8] {
        var out = [UInt8]()
        out.appendBigEndian(UInt32(name.utf8.count))
        out.append(contentsOf: name.utf8)
        out.appendBigEndian(UInt16(infos.count))
        for i in infos { out.appendBigEndian(i.rawValue) }
        return out
    }

    static func clientFlags(_ flags: NBD.ClientFlags = [.fixedNewstyle, .noZeroes]) -> [UInt8] {
        var out = [UInt8]()
        out.appendBigEndian(flags.rawValue)
        return out
    }

    struct OptionReply: Equatable {
        var option: NBD.Option
        var type: NBD.OptionReplyType
        var data: [UInt8]
    }

    /// Parses a sequence of option replies; fails the test via `nil` on garbage.
    static func parseReplies(_ bytes: [UInt8]) -> [OptionReply]? {
        var replies = [OptionReply]()
        var i = 0
        while i < bytes.count {
            guard bytes.count - i >= 20, bytes.readBigEndian(at: i, as: UInt64.self) == NBD.optionReplyMagic else { return nil }
            let length = Int(bytes.readBigEndian(at: i + 16, as: UInt32.self))
            guard bytes.count - i - 20 >= length else { return nil }
            replies.append(OptionReply(
                option: NBD.Option(rawValue: bytes.readBigEndian(at: i + 8)),
                type: NBD.OptionReplyType(rawValue: bytes.readBigEndian(at: i + 12)),
                data: Array(bytes[(i + 20)..<(i + 20 + length)])))
            i += 20 + length
        }
        return replies
    }
}

extension NBDServerHandshake.Output {
    var selectedExport: NBDExport? {
        for e in events { if case .exportSelected(let x, _) = e { return x } }
        return nil
    }
    var failure: NBDProtocolError? {
        for e in events { if case .failed(let x) = e { return x } }
        return nil
    }
}

extension NBDServerHandshake {
    /// Feeds `bytes` one at a time (worst-case fragmentation), merging outputs.
    mutating func receiveBytewise(_ bytes: [UInt8]) -> Output {
        var merged = Output()
        for b in bytes {
            let o = receive([b])
            merged.bytesToSend += o.bytesToSend
            merged.events += o.events
        }
        return merged
    }
}
