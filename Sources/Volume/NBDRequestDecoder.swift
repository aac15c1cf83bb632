/// Incremental decoder and validator for the NBD transmission phase
/// (compact 28-byte request headers).
///
/// Feed received bytes with ``receive(_:)`` and drain ``next()`` until it
/// returns `nil`. Each call yields one ``Action``:
///
/// - ``Action/request(_:)``: a valid request (WRITE with its whole payload);
///   execute it and answer with an ``NBDSimpleReply``.
/// - ``Action/reject(cookie:error:reason:)``: a well-formed but invalid request;
///   reply with that error and keep going. For a rejected WRITE the decoder
///   still consumes (and drops) the payload, so the stream stays in sync.
/// - ``Action/disconnect``: `NBD_CMD_DISC`; finish in-flight requests, then
///   close. No reply is sent.
///
/// ``next()`` throws ``NBDProtocolError`` when the stream cannot be trusted any
/// more (bad magic, oversized WRITE payload); the caller closes the connection.
/// Once thrown, the same error is thrown again.
public struct NBDRequestDecoder: Sendable {
    public enum Action: Sendable, Hashable {
        case request(NBDRequest)
        case reject(cookie: UInt64, error: NBD.ErrorCode, reason: String)
        case disconnect
    }

    enum State: Sendable {
        case header
        case payload(NBDRequest)
        case discarding(remaining: Int)
        case disconnected
        case failed(NBDProtocolError)
    }

    public let export: NBDExport
    /// Structured replies and metadata contexts: whether BLOCK_STATUS may be asked.
    public let negotiated: NBDNegotiated
    var state: State = .header
    var buffer: [UInt8] = []
    var readIndex = 0

    public init(export: NBDExport, negotiated: NBDNegotiated = NBDNegotiated()) {
        self.export = export
        self.negotiated = negotiated
    }

    /// Bytes received but not yet decoded.
    public var bufferedByteCount: Int { buffer.count - readIndex }

    /// Appends received bytes.
    public mutating func receive(_ bytes: some Collection<UInt8>) {
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

    /// Decodes the next action, or `nil` if more bytes are needed.
    public mutating func next() throws(NBDProtocolError) -> Action? {
        while true {
            switch state {
            case .failed(let error):
                throw error
            case .disconnected:
                // The client promised to send nothing more; ignore anything it does.
                readIndex = buffer.count
                return nil
            case .discarding(let remaining):
                let n = min(remaining, bufferedByteCount)
                readIndex += n
                if n < remaining {
                    state = .discarding(remaining: remaining - n)
                    return nil
                }
                state = .header
            case .payload(var request):
                let length = Int(request.length)
                guard bufferedByteCount >= length else { return nil }
                request.payload = Array(buffer[readIndex..<(readIndex + length)])
                readIndex += length
                state = .header
                return .request(request)
            case .header:
                guard bufferedByteCount >= NBD.requestHeaderSize else { return nil }
                return try decodeHeader()
            }
        }
    }

    mutating func decodeHeader() throws(NBDProtocolError) -> Action? {
        let i = readIndex
        let magic: UInt32 = buffer.readBigEndian(at: i)
        guard magic == NBD.requestMagic else {
            state = .failed(.badRequestMagic(magic))
            throw .badRequestMagic(magic)
        }
        let request = NBDRequest(
            command: NBD.Command(rawValue: buffer.readBigEndian(at: i + 6)),
            flags: NBD.CommandFlags(rawValue: buffer.readBigEndian(at: i + 4)),
            cookie: buffer.readBigEndian(at: i + 8),
            offset: buffer.readBigEndian(at: i + 16),
            length: buffer.readBigEndian(at: i + 24))
        readIndex += NBD.requestHeaderSize

        if request.command == .disconnect {
            state = .disconnected
            readIndex = buffer.count
            return .disconnect
        }
        if request.command == .write && request.length > export.blockSizes.maximum {
            let error = NBDProtocolError.writePayloadTooLarge(
                length: request.length, maximum: export.blockSizes.maximum)
            state = .failed(error)
            throw error
        }
        if let (code, reason) = validate(request) {
            if request.command == .write {
                state = .discarding(remaining: Int(request.length))
            }
            return .reject(cookie: request.cookie, error: code, reason: reason)
        }
        if request.command == .write {
            state = .payload(request)
            return try next()
        }
        return .request(request)
    }

    /// The error to reply with, or `nil` if the request is valid for this export.
    func validate(_ r: NBDRequest) -> (NBD.ErrorCode, String)? {
        let flags = export.flags
        let fua: NBD.CommandFlags = flags.contains(.sendFUA) ? .fua : []
        let allowedFlags: NBD.CommandFlags
        let isWriteLike: Bool
        switch r.command {
        case .read:
            allowedFlags = fua
            isWriteLike = false
        case .write:
            allowedFlags = fua
            isWriteLike = true
        case .flush where flags.contains(.sendFlush):
            allowedFlags = fua
            isWriteLike = false
        case .trim where flags.contains(.sendTrim):
            allowedFlags = fua
            isWriteLike = true
        case .writeZeroes where flags.contains(.sendWriteZeroes):
            allowedFlags = fua.union(.noHole).union(flags.contains(.sendFastZero) ? .fastZero : [])
            isWriteLike = true
        case .cache where flags.contains(.sendCache):
            allowedFlags = fua
            isWriteLike = false
        case .blockStatus where negotiated.structuredReplies && !negotiated.metaContexts.isEmpty:
            allowedFlags = fua.union(.reqOne)
            isWriteLike = false
        default:
            return (.einval, "\(r.command) is not supported by export '\(export.name)'")
        }
        let unknown = r.flags.subtracting(allowedFlags)
        guard unknown.isEmpty else {
            return (.einval, "\(r.command) with unsupported flags 0x\(String(unknown.rawValue, radix: 16))")
        }
        if isWriteLike && flags.contains(.readOnly) {
            return (.eperm, "\(r.command) on read-only export '\(export.name)'")
        }
        if r.command == .flush {
            // Offset and length of FLUSH carry no meaning (clients send zeros).
            return nil
        }
        guard r.length > 0 else {
            return (.einval, "\(r.command) with length 0")
        }
        if r.command == .blockStatus {
            // Any range within the export: the answer describes extents, it carries no data.
            guard r.offset <= export.size, UInt64(r.length) <= export.size - r.offset else {
                return (.einval, "\(r.command) offset \(r.offset) length \(r.length) exceeds export size \(export.size)")
            }
            return nil
        }
        if r.command == .read && r.length > export.blockSizes.maximum {
            return (.einval, "NBD_CMD_READ length \(r.length) exceeds maximum block size \(export.blockSizes.maximum)")
        }
        let size = export.size
        guard r.offset <= size, UInt64(r.length) <= size - r.offset else {
            // Spec: ENOSPC for writes past the end, EINVAL for reads and trims.
            let code: NBD.ErrorCode = (r.command == .write || r.command == .writeZeroes) ? .enospc : .einval
            return (code, "\(r.command) offset \(r.offset) length \(r.length) exceeds export size \(size)")
        }
        let minimum = UInt64(export.blockSizes.minimum)
        let reachesEnd = r.offset + UInt64(r.length) == size
        guard r.offset % minimum == 0, UInt64(r.length) % minimum == 0 || reachesEnd else {
            return (.einval, "\(r.command) offset \(r.offset) length \(r.length) not aligned to minimum block size \(minimum)")
        }
        return nil
    }
}
