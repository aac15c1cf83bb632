import Crypto

/// An operator command one daemon sends the other on the heartbeat networks (UDP), authenticated
/// with the cluster key: `promote` (the sender demoted the VM cleanly; start it here) and
/// `handOver` (stop the VM there and promote it here), and the live migration's (docs/ha.md):
/// `prepareLive` (export the secondary with guest changes held; answered by `livePrepared`, whose
/// detail is the NBD socket directory, or `liveRefused`, detail the reason), `liveArrived` (the
/// sender demoted after the migration: promote under the running domain), `abortLive` (drop the
/// prepared exports) and `handOverLive` (migrate it live to the sender). All are only acted on
/// when the module states allow it, so a replayed datagram cannot do harm beyond what the state
/// machine permits.
///
/// Layout: "VMHC", kind, sender, target, vm (each one length byte + UTF-8), [detail, same form,
/// only when not empty], nonce (8 bytes, big endian), HMAC-SHA256 of everything before it.
struct PeerCommand: Sendable, Equatable {
    static let magic: [UInt8] = Array("VMHC".utf8)
    enum Kind: UInt8, Sendable {
        case promote = 1, handOver = 2
        case prepareLive = 3, livePrepared = 4, liveRefused = 5, liveArrived = 6, abortLive = 7, handOverLive = 8
    }
    var kind: Kind
    var sender: String
    var target: String
    var vm: String
    var detail = ""
    var nonce: UInt64

    func encode(key: [UInt8]) -> [UInt8] {
        var bytes = Self.magic + [kind.rawValue]
        for s in [sender, target, vm] + (detail.isEmpty ? [] : [detail]) {
            let utf8 = Array(s.utf8.prefix(255))
            bytes.append(UInt8(utf8.count))
            bytes += utf8
        }
        for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: nonce >> UInt64(shift))) }
        bytes += HMAC<SHA256>.authenticationCode(for: bytes, using: SymmetricKey(data: key))
        return bytes
    }

    static func decode(_ bytes: [UInt8], key: [UInt8]) -> PeerCommand? {
        guard bytes.count > 4 + 1 + 3 + 8 + 32 else { return nil }
        let body = Array(bytes[0..<(bytes.count - 32)])
        guard HMAC<SHA256>.isValidAuthenticationCode(Array(bytes[(bytes.count - 32)...]), authenticating: body, using: SymmetricKey(data: key)),
            let kind = Kind(rawValue: body[4])
        else { return nil }
        var offset = 5
        var strings: [String] = []
        while strings.count < 3 || (strings.count == 3 && offset + 8 < body.count) {
            guard offset < body.count else { return nil }
            let length = Int(body[offset])
            offset += 1
            guard offset + length <= body.count else { return nil }
            strings.append(String(decoding: body[offset..<(offset + length)], as: UTF8.self))
            offset += length
        }
        guard offset + 8 == body.count else { return nil }
        let nonce = body[offset...].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        return PeerCommand(kind: kind, sender: strings[0], target: strings[1], vm: strings[2], detail: strings.count > 3 ? strings[3] : "", nonce: nonce)
    }
}
