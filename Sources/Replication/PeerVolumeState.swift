import FoundationEssentials
import ReplicationPolicy
import Volume

/// VOLUME_STATE: what one side knows about a volume, exchanged after the
/// handshake (and on role changes) so both sides can run
/// ``SyncDecision/decide(local:peer:localWinsTies:)`` on the same inputs.
///
/// Header: stream id = the volume id used by this connection's data frames.
/// Payload (78 bytes + name):
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 16 | volume UUID |
/// | 16 | 8 | volume size |
/// | 24 | 8 | grain size |
/// | 32 | 8 | GI current |
/// | 40 | 8 | GI bitmap |
/// | 48 | 8 | GI history[0] |
/// | 56 | 8 | GI history[1] |
/// | 64 | 8 | dirty bytes (0 = bitmap empty) |
/// | 72 | 1 | consistency (0 inconsistent, 1 outdated, 2 consistent) |
/// | 73 | 1 | role flags (bit 0 primary, bit 1 was-primary, bit 2 crashed-primary, bit 3 answered-without-peer) |
/// | 74 | 1 | split-brain policy (0 disconnect, 1 discard-younger-primary, 2 discard-least-changes, 3 discard-zero-changes) |
/// | 75 | 1 | generation origin (0 unknown, 1 continued as primary, 2 promotion) |
/// | 76 | 2+n | volume name (u16 length + UTF-8, 1–255 bytes) |
public struct PeerVolumeState: PeerMessageCodable {
    public static let frameType = PeerFrameType.volumeState
    /// Payload bytes without the name (but with its length field).
    public static let fixedSize = 78

    /// Same bit values as ``VolumeMetadata/Flags``.
    public struct Roles: OptionSet, Sendable, Hashable {
        public var rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let primary = Roles(rawValue: 1 << 0)
        public static let wasPrimary = Roles(rawValue: 1 << 1)
        public static let crashedPrimary = Roles(rawValue: 1 << 2)
        public static let answeredWithoutPeer = Roles(rawValue: 1 << 3)
        public static let known: Roles = [.primary, .wasPrimary, .crashedPrimary, .answeredWithoutPeer]
    }

    public var volumeID: UInt32
    public var volumeUUID: UUID
    public var name: String
    public var size: UInt64
    public var grainSize: UInt64
    public var generations: GenerationIdentifiers
    public var consistency: VolumeMetadata.Consistency
    public var roles: Roles
    /// Bytes covered by set bits of the dirty bitmap (0 = nothing to resync from this side).
    public var dirtyBytes: UInt64
    /// The sender's policy: both sides settle a split brain independently, so they must agree.
    public var splitBrainPolicy: SplitBrainPolicy

    public init(volumeID: UInt32, volumeUUID: UUID, name: String, size: UInt64, grainSize: UInt64,
                generations: GenerationIdentifiers, consistency: VolumeMetadata.Consistency,
                roles: Roles, dirtyBytes: UInt64, splitBrainPolicy: SplitBrainPolicy) {
        self.volumeID = volumeID
        self.volumeUUID = volumeUUID
        self.name = name
        self.size = size
        self.grainSize = grainSize
        self.generations = generations
        self.consistency = consistency
        self.roles = roles
        self.dirtyBytes = dirtyBytes
        self.splitBrainPolicy = splitBrainPolicy
    }

    /// The input for ``SyncDecision/decide(local:peer:localWinsTies:)``.
    public var replicaState: ReplicaState {
        ReplicaState(
            generations: generations, crashedPrimary: roles.contains(.crashedPrimary), consistency: consistency,
            dirtyBytes: dirtyBytes, answeredWithoutPeer: roles.contains(.answeredWithoutPeer))
    }

    public var isBitmapEmpty: Bool { dirtyBytes == 0 }

    public var headerStreamID: UInt32 { volumeID }

    public func encodePayload(into out: inout [UInt8]) {
        withUnsafeBytes(of: volumeUUID.uuid) { out.append(contentsOf: $0) }
        out.appendBigEndian(size)
        out.appendBigEndian(grainSize)
        out.appendBigEndian(generations.current)
        out.appendBigEndian(generations.bitmap)
        out.appendBigEndian(generations.history[0])
        out.appendBigEndian(generations.history[1])
        out.appendBigEndian(dirtyBytes)
        out.append(consistency.rawValue)
        out.append(roles.rawValue)
        out.append(Self.code(of: splitBrainPolicy))
        out.append(generations.origin.rawValue)
        out.appendShortText(name)
    }

    public init(header: PeerFrameHeader, payload: ArraySlice<UInt8>) throws(PeerProtocolError) {
        let type = Self.frameType
        try header.requireType(type)
        try header.requireNoSequence()
        var r = PayloadReader(type: type, bytes: payload)
        volumeID = header.streamID
        let u = Array(try r.readBytes(16, "volume uuid"))
        volumeUUID = UUID(uuid: (u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7],
                                 u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]))
        size = try r.read(UInt64.self, "size")
        grainSize = try r.read(UInt64.self, "grain size")
        guard grainSize >= DirtyBitmap.minimumGrainSize, grainSize & (grainSize - 1) == 0 else {
            throw .fieldOutOfRange(type: type, field: "grain size", value: "\(grainSize)")
        }
        let current = try r.read(UInt64.self, "GI current")
        let bitmap = try r.read(UInt64.self, "GI bitmap")
        let h0 = try r.read(UInt64.self, "GI history[0]")
        let h1 = try r.read(UInt64.self, "GI history[1]")
        dirtyBytes = try r.read(UInt64.self, "dirty bytes")
        guard dirtyBytes <= size else {
            throw .fieldOutOfRange(type: type, field: "dirty bytes", value: "\(dirtyBytes) > size \(size)")
        }
        let c = try r.read(UInt8.self, "consistency")
        guard let consistency = VolumeMetadata.Consistency(rawValue: c) else {
            throw .fieldOutOfRange(type: type, field: "consistency", value: "\(c)")
        }
        self.consistency = consistency
        roles = Roles(rawValue: try r.read(UInt8.self, "role flags"))
        guard roles.isSubset(of: .known) else {
            throw .fieldOutOfRange(type: type, field: "role flags", value: "0x\(String(roles.rawValue, radix: 16))")
        }
        let policy = try r.read(UInt8.self, "split-brain policy")
        guard let splitBrainPolicy = Self.policy(code: policy) else {
            throw .fieldOutOfRange(type: type, field: "split-brain policy", value: "\(policy)")
        }
        self.splitBrainPolicy = splitBrainPolicy
        let rawOrigin = try r.read(UInt8.self, "generation origin")
        guard let origin = GenerationOrigin(rawValue: rawOrigin) else {
            throw .fieldOutOfRange(type: type, field: "generation origin", value: "\(rawOrigin)")
        }
        generations = GenerationIdentifiers(current: current, bitmap: bitmap, history: [h0, h1], origin: origin)
        name = try r.readText("volume name", maximum: PeerProtocol.maximumNameLength, allowEmpty: false)
        try r.finish()
    }

    /// Wire values of the split-brain policies (docs/protocol.md).
    static func code(of policy: SplitBrainPolicy) -> UInt8 {
        switch policy {
        case .disconnect: 0
        case .discardYoungerPrimary: 1
        case .discardLeastChanges: 2
        case .discardZeroChanges: 3
        }
    }

    static func policy(code: UInt8) -> SplitBrainPolicy? { SplitBrainPolicy.allCases.first { Self.code(of: $0) == code } }
}
