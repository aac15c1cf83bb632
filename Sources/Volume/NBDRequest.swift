/// A validated transmission-phase request, ready to execute.
///
/// Produced only by ``NBDRequestDecoder``, so every field is within the
/// export's limits: the range lies inside the export, is aligned to the
/// minimum block size, READ/WRITE lengths are at most the maximum block size,
/// and only flags the export advertised are set.
public struct NBDRequest: Sendable, Hashable {
    public var command: NBD.Command
    public var flags: NBD.CommandFlags
    /// Opaque client value echoed in the reply (called "handle" in older specs).
    public var cookie: UInt64
    public var offset: UInt64
    public var length: UInt32
    /// The data to write for `NBD_CMD_WRITE` (`length` bytes); empty otherwise.
    public var payload: [UInt8]

    public init(command: NBD.Command, flags: NBD.CommandFlags = [], cookie: UInt64,
                offset: UInt64, length: UInt32, payload: [UInt8] = []) {
        self.command = command
        self.flags = flags
        self.cookie = cookie
        self.offset = offset
        self.length = length
        self.payload = payload
    }

    /// The 28-byte wire header (plus payload for WRITE), as a client sends it.
    /// Used by tests and by any in-process client.
    public func encoded() -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(NBD.requestHeaderSize + payload.count)
        out.appendBigEndian(NBD.requestMagic)
        out.appendBigEndian(flags.rawValue)
        out.appendBigEndian(command.rawValue)
        out.appendBigEndian(cookie)
        out.appendBigEndian(offset)
        out.appendBigEndian(length)
        out.append(contentsOf: payload)
        return out
    }
}
