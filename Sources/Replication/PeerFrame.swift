/// One whole frame as it travels on the wire: a validated header and its raw
/// payload. ``PeerMessage/init(frame:)`` turns it into a typed message.
public struct PeerFrame: Sendable, Hashable {
    public var header: PeerFrameHeader
    /// Exactly `header.payloadLength` bytes. For WRITE and RESYNC_DATA the
    /// decoder fills this array directly from received fragments, and typed
    /// messages slice their data out of it without another copy.
    public var payload: [UInt8]

    @inlinable
    public init(header: PeerFrameHeader, payload: [UInt8]) {
        precondition(Int(header.payloadLength) == payload.count, "payload length disagrees with header")
        self.header = header
        self.payload = payload
    }

    /// Appends header and payload.
    @inlinable
    public func encode(into out: inout [UInt8]) {
        header.encode(into: &out)
        out.append(contentsOf: payload)
    }

    /// Header and payload in one array.
    @inlinable
    public var encoded: [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(PeerProtocol.headerSize + payload.count)
        encode(into: &out)
        return out
    }
}
