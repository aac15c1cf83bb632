import Crypto

/// The witness's UDP wire format: one datagram per request or answer, authenticated with the
/// cluster key (HMAC-SHA256 over everything before the 32-byte tag).
///
/// | bytes | field |
/// |---|---|
/// | 4 | magic `VMWL` |
/// | 1 | kind: 1 request, 2 granted, 3 denied, 4 release, 5 outdated |
/// | 1 | flags: request bit 0 = peer in sync; granted bit 0 = peer outdated; otherwise 0 |
/// | 1 + n | host name |
/// | 8 | request id (release: the term) |
/// | 8 | granted: term; denied: retry after (ms) |
/// | 8 | granted: duration (ms); otherwise 0 |
/// | 1 + n | denied: current holder ("" = none / quiet period); outdated: the unsynced writer |
/// | 32 | tag |
public enum WitnessWire {
    public static let magic: [UInt8] = Array("VMWL".utf8)

    public enum Message: Sendable, Equatable {
        case request(LeaseRequest)
        case response(LeaseResponse)
        /// The holder gives the vote back after it stopped all primary I/O.
        case release(host: String, term: UInt64)
    }

    public static func encode(_ message: Message, key: [UInt8]) -> [UInt8] {
        var bytes = magic
        func string(_ s: String) {
            let utf8 = Array(s.utf8.prefix(255))
            bytes.append(UInt8(utf8.count))
            bytes.append(contentsOf: utf8)
        }
        func u64(_ v: UInt64) { for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt64(shift))) } }
        switch message {
        case .request(let request):
            bytes += [1, request.peerInSync ? 1 : 0]; string(request.host); u64(request.requestID); u64(0); u64(0); string("")
        case .response(let response):
            switch response.decision {
            case .granted(let term, let duration, let peerOutdated):
                bytes += [2, peerOutdated ? 1 : 0]; string(response.host); u64(response.requestID); u64(term)
                u64(UInt64(duration.nanosecondsValue / 1_000_000)); string("")
            case .denied(let holder, let retryAfter):
                bytes += [3, 0]; string(response.host); u64(response.requestID)
                u64(UInt64(max(0, retryAfter.nanosecondsValue / 1_000_000))); u64(0); string(holder ?? "")
            case .outdated(let writer):
                bytes += [5, 0]; string(response.host); u64(response.requestID); u64(0); u64(0); string(writer)
            }
        case .release(let host, let term):
            bytes += [4, 0]; string(host); u64(term); u64(0); u64(0); string("")
        }
        bytes.append(contentsOf: HMAC<SHA256>.authenticationCode(for: bytes, using: SymmetricKey(data: key)))
        return bytes
    }

    /// Nil for anything not authentic or not well formed.
    public static func decode(_ bytes: [UInt8], key: [UInt8]) -> Message? {
        guard bytes.count > magic.count + 32, Array(bytes[0..<4]) == magic else { return nil }
        let body = Array(bytes[0..<(bytes.count - 32)])
        guard HMAC<SHA256>.isValidAuthenticationCode(Array(bytes[(bytes.count - 32)...]), authenticating: body, using: SymmetricKey(data: key))
        else { return nil }
        var reader = ByteReader(bytes: body, offset: 4)
        do {
            let kind = try reader.uint8()
            let flags = try reader.uint8()
            guard flags & ~1 == 0 else { return nil }
            let host = try reader.string("host")
            let id = try reader.uint64()
            let a = try reader.uint64()
            let b = try reader.uint64()
            let holder = try reader.string("holder")
            guard reader.isAtEnd else { return nil }
            switch kind {
            case 1: return .request(LeaseRequest(host: host, requestID: id, peerInSync: flags & 1 != 0))
            case 2:
                return .response(
                    LeaseResponse(requestID: id, host: host, decision: .granted(term: a, duration: .milliseconds(Int64(clamping: b)), peerOutdated: flags & 1 != 0)))
            case 3:
                return .response(LeaseResponse(requestID: id, host: host, decision: .denied(holder: holder.isEmpty ? nil : holder, retryAfter: .milliseconds(Int64(clamping: a)))))
            case 4: return .release(host: host, term: id)
            case 5 where !holder.isEmpty: return .response(LeaseResponse(requestID: id, host: host, decision: .outdated(writer: holder)))
            default: return nil
            }
        } catch {
            return nil
        }
    }
}
