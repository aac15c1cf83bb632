/// Incremental decoder of peer frames.
///
/// Feed received bytes (any fragmentation, down to one byte) with
/// ``receive(_:)`` and drain ``next()`` until it returns `nil`:
///
/// ```swift
/// decoder.receive(chunk)
/// while let frame = try decoder.next() {
///     let message = try PeerMessage(frame: frame)
///     ...
/// }
/// ```
///
/// Each header is validated (magic, CRC32C, version, type, flags, reserved,
/// payload length against the type and ``maximumPayloadLength``) before its
/// payload is buffered, so a corrupt or hostile length can never make us
/// allocate. Any ``PeerProtocolError`` is fatal for the connection and is
/// thrown again on every later call.
///
/// Copies: while a payload is outstanding, ``receive(_:)`` copies bytes
/// straight into that frame's own payload array (reserved at its final size),
/// and ``next()`` hands the array over without copying it again. So each
/// payload byte is copied once from the caller's receive buffer, except the
/// few bytes of a fragment that follow a header within the same fragment.
public struct PeerFrameDecoder: Sendable {
    enum State: Sendable {
        case header
        case payload(PeerFrameHeader)
        case failed(PeerProtocolError)
    }

    public let maximumPayloadLength: Int
    var state: State = .header
    /// Bytes not yet assigned to a frame (headers, and payload bytes that
    /// arrived in the same fragment as their header).
    var buffer: [UInt8] = []
    var readIndex = 0
    /// The payload being collected in state `.payload`.
    var payload: [UInt8] = []

    /// - Parameter maximumPayloadLength: payloads above this are a protocol
    ///   error (checked on the header, before buffering).
    public init(maximumPayloadLength: Int = PeerProtocol.maximumPayloadLength) {
        self.maximumPayloadLength = maximumPayloadLength
    }

    /// Bytes received but not yet returned as frames.
    public var bufferedByteCount: Int { buffer.count - readIndex + payload.count }

    /// Every byte received but not yet returned as a frame, in stream order
    /// (a partly collected frame is re-encoded from its validated header).
    /// Used to hand a stream over to another decoder, e.g. after the handshake.
    public var undecodedBytes: [UInt8] {
        var out = [UInt8]()
        if case .payload(let header) = state {
            header.encode(into: &out)
            out.append(contentsOf: payload)
        }
        out.append(contentsOf: buffer[readIndex...])
        return out
    }

    /// Appends received bytes.
    public mutating func receive(_ bytes: UnsafeRawBufferPointer) {
        var bytes = bytes
        if case .payload(let header) = state, readIndex == buffer.count {
            // Fast path: the outstanding payload takes the bytes directly.
            let take = min(Int(header.payloadLength) - payload.count, bytes.count)
            payload.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[0..<take]))
            bytes = UnsafeRawBufferPointer(rebasing: bytes[take...])
            if bytes.isEmpty { return }
        }
        if readIndex == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            readIndex = 0
        } else if readIndex >= 64 << 10 && readIndex * 2 >= buffer.count {
            // Compact only when the dead prefix dominates, keeping appends amortized O(1).
            buffer.removeFirst(readIndex)
            readIndex = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// Appends received bytes.
    public mutating func receive(_ bytes: some Sequence<UInt8>) {
        let done: Void? = bytes.withContiguousStorageIfAvailable { receive(UnsafeRawBufferPointer($0)) }
        if done == nil {
            let copy = Array(bytes)
            copy.withUnsafeBytes { receive($0) }
        }
    }

    /// Hands over a frame whose payload is still arriving, if `accept` wants its header: returns
    /// the header and the payload bytes received so far, and expects the next header after the
    /// rest of that payload, which the caller receives itself (e.g. straight into an aligned
    /// buffer). Nothing else is buffered then: an incomplete payload takes every byte received.
    public mutating func takeIncompletePayload(
        if accept: (PeerFrameHeader) -> Bool
    ) -> (header: PeerFrameHeader, received: [UInt8])? {
        guard case .payload(let header) = state, payload.count < Int(header.payloadLength), accept(header) else { return nil }
        precondition(readIndex == buffer.count, "bytes buffered behind an incomplete payload")
        state = .header
        defer { payload = [] }
        return (header, payload)
    }

    /// The next whole frame, or `nil` if more bytes are needed.
    public mutating func next() throws(PeerProtocolError) -> PeerFrame? {
        while true {
            switch state {
            case .failed(let error):
                throw error
            case .header:
                guard buffer.count - readIndex >= PeerProtocol.headerSize else { return nil }
                let start = readIndex, maximum = maximumPayloadLength
                let result = buffer.withUnsafeBytes { raw in
                    Result { () throws(PeerProtocolError) in
                        try PeerFrameHeader.decode(
                            UnsafeRawBufferPointer(rebasing: raw[start..<(start + PeerProtocol.headerSize)]),
                            maximumPayloadLength: maximum)
                    }
                }
                let header: PeerFrameHeader
                switch result {
                case .success(let h): header = h
                case .failure(let error):
                    state = .failed(error)
                    throw error
                }
                readIndex += PeerProtocol.headerSize
                let length = Int(header.payloadLength)
                payload = []
                payload.reserveCapacity(length)
                let take = min(length, buffer.count - readIndex)
                payload.append(contentsOf: buffer[readIndex..<(readIndex + take)])
                readIndex += take
                state = .payload(header)
            case .payload(let header):
                guard payload.count == Int(header.payloadLength) else { return nil }
                state = .header
                let frame = PeerFrame(header: header, payload: payload)
                payload = []
                return frame
            }
        }
    }
}
