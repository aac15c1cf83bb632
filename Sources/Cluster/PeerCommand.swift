import Crypto

/// An operator command one daemon sends the other on the heartbeat networks (UDP), authenticated
/// with the cluster key: `promote` (the sender demoted the VM cleanly; start it here) and
/// `handOver` (stop the VM there and promote it here), and the live migration's (docs/ha.md):
/// `prepareLive` (export the secondary with guest changes held; answered by `livePrepared`, whose
/// detail is the NBD socket directory, or `liveRefused`, detail the reason), `liveArrived` (the
/// sender demoted after the migration: promote under the running domain), `abortLive` (drop the
/// prepared exports) and `handOverLive` (migrate it live to the sender).
///
/// Each command carries the sender's incarnation and a sequence number that increases with every
/// command of that incarnation; the receiver admits each (incarnation, sequence) once
/// (`PeerCommandReplayWindow`), so a captured datagram cannot be played again.
///
/// Layout: "VMHC", kind, sender, target, vm (each one length byte + UTF-8), [detail, same form,
/// only when not empty], incarnation, sequence (8 bytes each, big endian), HMAC-SHA256 of
/// everything before it.
public struct PeerCommand: Sendable, Equatable {
    public static let magic: [UInt8] = Array("VMHC".utf8)
    public enum Kind: UInt8, Sendable, CaseIterable {
        case promote = 1, handOver = 2
        case prepareLive = 3, livePrepared = 4, liveRefused = 5, liveArrived = 6, abortLive = 7, handOverLive = 8
    }
    public var kind: Kind
    public var sender: String
    public var target: String
    public var vm: String
    public var detail: String
    public var incarnation: UInt64
    public var sequence: UInt64

    public init(kind: Kind, sender: String, target: String, vm: String, detail: String = "", incarnation: UInt64, sequence: UInt64) {
        self.kind = kind
        self.sender = sender
        self.target = target
        self.vm = vm
        self.detail = detail
        self.incarnation = incarnation
        self.sequence = sequence
    }

    static let macLength = 32

    public func encode(key: [UInt8]) -> [UInt8] {
        var bytes = Self.magic + [kind.rawValue]
        for s in [sender, target, vm] + (detail.isEmpty ? [] : [detail]) {
            let utf8 = Array(s.utf8.prefix(255))
            bytes.append(UInt8(utf8.count))
            bytes += utf8
        }
        for value in [incarnation, sequence] {
            for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
        }
        bytes += HMAC<SHA256>.authenticationCode(for: bytes, using: SymmetricKey(data: key))
        return bytes
    }

    public static func decode(_ bytes: [UInt8], key: [UInt8]) throws(PeerCommandError) -> PeerCommand {
        guard bytes.starts(with: magic) else { throw .malformed("not a peer command (no VMHC magic)") }
        guard bytes.count >= magic.count + 1 + 3 + 16 + macLength else { throw .malformed("\(bytes.count) bytes is too short") }
        let body = Array(bytes[0..<(bytes.count - macLength)])
        guard HMAC<SHA256>.isValidAuthenticationCode(Array(bytes[(bytes.count - macLength)...]), authenticating: body, using: SymmetricKey(data: key))
        else { throw .badAuthentication }
        guard let kind = Kind(rawValue: body[4]) else { throw .malformed("unknown kind \(body[4])") }
        var offset = 5
        var strings: [String] = []
        while strings.count < 3 || (strings.count == 3 && offset + 16 < body.count) {
            guard offset < body.count else { throw .malformed("truncated in field \(strings.count + 1)") }
            let length = Int(body[offset])
            offset += 1
            guard offset + length <= body.count else { throw .malformed("field \(strings.count + 1) runs past the end") }
            strings.append(String(decoding: body[offset..<(offset + length)], as: UTF8.self))
            offset += length
        }
        guard offset + 16 == body.count else { throw .malformed("\(body.count - offset) bytes after the fields, expected 16") }
        let incarnation = body[offset..<(offset + 8)].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let sequence = body[(offset + 8)...].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        return PeerCommand(
            kind: kind, sender: strings[0], target: strings[1], vm: strings[2], detail: strings.count > 3 ? strings[3] : "",
            incarnation: incarnation, sequence: sequence)
    }
}

public enum PeerCommandError: Error, Equatable, Sendable, CustomStringConvertible {
    case malformed(String)
    /// Wrong cluster key, or altered on the way.
    case badAuthentication

    public var description: String {
        switch self {
        case .malformed(let why): "malformed peer command: \(why)"
        case .badAuthentication: "peer command failed authentication (wrong cluster key or altered)"
        }
    }
}

/// Admits each (incarnation, sequence) of the peer's commands once. The peer's current
/// incarnation is what its heartbeats announce; a command from an older one, or before any
/// heartbeat, is refused (a receiver that restarted remembers nothing, and must not take an old
/// capture for news). Within the incarnation, sequences may arrive out of order (UDP, one copy per
/// network) within a window of `width`; each is admitted once.
public struct PeerCommandReplayWindow: Sendable, Equatable {
    public static let width: UInt64 = 64

    public enum Verdict: Sendable, Equatable, CustomStringConvertible {
        case admitted
        case peerNotHeard
        case staleIncarnation(current: UInt64)
        case replayed
        case tooOld(highest: UInt64)

        public var description: String {
            switch self {
            case .admitted: "admitted"
            case .peerNotHeard: "refused: no heartbeat from the peer yet, so its incarnation is unknown"
            case .staleIncarnation(let current): "refused: from an older incarnation of the peer (current \(current))"
            case .replayed: "refused: replayed (this sequence was already admitted)"
            case .tooOld(let highest): "refused: sequence older than the replay window (highest admitted \(highest))"
            }
        }
    }

    /// The newest incarnation seen, in heartbeats or admitted commands.
    public private(set) var incarnation: UInt64?
    private var highest: UInt64 = 0
    /// Bit i set: sequence `highest - i` was admitted.
    private var seen: UInt64 = 0

    public init() {}

    /// A heartbeat announced the peer's incarnation.
    public mutating func peerAnnounced(incarnation announced: UInt64) {
        if let incarnation, announced <= incarnation { return }
        incarnation = announced
        highest = 0
        seen = 0
    }

    public mutating func admit(incarnation commandIncarnation: UInt64, sequence: UInt64) -> Verdict {
        guard let current = incarnation else { return .peerNotHeard }
        if commandIncarnation < current { return .staleIncarnation(current: current) }
        if commandIncarnation > current { peerAnnounced(incarnation: commandIncarnation) }
        if sequence > highest {
            let shift = sequence - highest
            seen = shift >= Self.width ? 0 : seen << shift
            seen |= 1
            highest = sequence
            return .admitted
        }
        let age = highest - sequence
        if age >= Self.width { return .tooOld(highest: highest) }
        let bit = UInt64(1) << age
        if seen & bit != 0 { return .replayed }
        seen |= bit
        return .admitted
    }
}

/// A promote's `detail`: `handover=N` (`HostPolicy.acceptsPromote`), then `,checker-move` when a
/// failed check moves the VM (the receiver holds it for the hold-down, `RecoveryPolicy`).
/// A detail without `handover=` (an older peer) reads as no number.
public struct PromoteDetail: Sendable, Equatable {
    public var handover: Int?
    public var checkerMove: Bool
    /// A host check evacuated it: the receiver treats it like a failover's VM (it fails back by
    /// the VM's failback policy once its hold-down ends).
    public var evacuation: Bool

    public init(handover: Int?, checkerMove: Bool = false, evacuation: Bool = false) {
        self.handover = handover
        self.checkerMove = checkerMove || evacuation
        self.evacuation = evacuation
    }

    static let checkerMark = "checker-move"
    static let evacuationMark = "evacuation"

    public var encoded: String {
        ((handover.map { ["handover=\($0)"] } ?? []) + (checkerMove ? [Self.checkerMark] : []) + (evacuation ? [Self.evacuationMark] : []))
            .joined(separator: ",")
    }

    public init(decoding detail: String) {
        handover = nil
        checkerMove = false
        evacuation = false
        for part in detail.split(separator: ",") {
            if part.hasPrefix("handover=") { handover = Int(part.dropFirst("handover=".count)) }
            if part == Self.checkerMark { checkerMove = true }
            if part == Self.evacuationMark { evacuation = true }
        }
    }
}
