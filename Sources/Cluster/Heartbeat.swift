import Crypto
import ReplicationPolicy

/// One heartbeat: a UDP payload sent by each host on every heartbeat network each interval — one or
/// more of them when the VM summaries do not fit one `maximumDatagram` (`parts`).
///
/// Wire format (big-endian), HMAC-SHA256 over everything before the tag:
///
/// | bytes | field |
/// |---|---|
/// | 4 | magic `VMHB` |
/// | 1 | version (3, or 4 when a host check fails; 1 and 2 still accepted: 1 has no capacity or grace, 1 and 2 no generations) |
/// | 1 | network index this copy was sent on |
/// | 1 + n | cluster name (length-prefixed UTF-8) |
/// | 1 + n | sender host name |
/// | 8 | incarnation (strictly increases with every daemon start) |
/// | 8 | sequence (strictly increases within an incarnation) |
/// | 8 | timestamp: sender's monotonic clock, ns |
/// | 8 | echoed incarnation: the receiver's incarnation whose timestamp is echoed (0: none) |
/// | 8 | echoed timestamp: the latest timestamp the sender received from the receiver |
/// | 4, 4 | sender's capacity for VMs: vCPUs, memory in MiB (0, 0: unknown) — version 2 only |
/// | 4 | restart grace in ms: the sender's vmhad is stopping for a restart; 0: not — version 2 only |
/// | 2 | VM summary count (0 if absent) |
/// | per VM: 1 + n, 1, 1 | name, module state, replica state |
/// | per VM: 1, then per volume 8 × 4, 1 | volume count; current, bitmap, history 0 and 1 generations, flags (consistency in bits 0–1, crashed primary bit 2, answered without peer bit 3) — version 3 only |
/// | 1, then per check 1 + n | the sender's failed host checks (`[[hosts.checks]]`), by name — version 4 only |
/// | 32 | HMAC-SHA256 tag |
///
/// Version 4 is sent only while a host check fails, so a version-3 peer (an upgrade in progress)
/// keeps hearing a healthy host; the receiver reads a version-3 heartbeat as "no check fails".
///
/// The echo lets a primary know its peer still *hears* it (not just that it hears the peer), which
/// the fencing rule in docs/witness.md needs. The capacity lets either host plan placements with
/// the other host's real size (libvirt node info or its own configured override). The generations
/// let the peer tell whose copy of a VM is newer before either runs it (`DataRelation`): an
/// election or a vote never starts a VM on the older copy.
public struct Heartbeat: Sendable, Equatable {
    public static let magic: [UInt8] = Array("VMHB".utf8)
    public static let version: UInt8 = 4
    static let tagLength = 32

    public struct VMSummary: Sendable, Equatable {
        public var name: String
        public var state: ModuleState
        public var replica: ReplicaState
        /// The VM's volumes' data generations, in disk order (empty: not known, or an older sender).
        public var volumes: [GenerationSummary]

        /// Bytes this summary takes in a version-3 heartbeat (`encode`).
        static func encodedSize(_ vm: VMSummary) -> Int { 1 + vm.name.utf8.count + 2 + 1 + vm.volumes.count * 33 }

        public init(name: String, state: ModuleState, replica: ReplicaState, volumes: [GenerationSummary] = []) {
            self.name = name
            self.state = state
            self.replica = replica
            self.volumes = volumes
        }
    }

    public var clusterName: String
    public var sender: String
    public var network: Int
    public var incarnation: UInt64
    public var sequence: UInt64
    public var timestamp: MonotonicInstant
    /// The receiver's (incarnation, timestamp) most recently heard by the sender, if any.
    public var echo: (incarnation: UInt64, timestamp: MonotonicInstant)?
    public var vms: [VMSummary]
    /// What the sender offers to VMs; nil when it does not know (or sent version 1).
    public var capacity: Resources?
    /// Sent by a vmhad stopping gracefully (a restart or an upgrade): its guests are paused on
    /// their NBD disks meanwhile, so the receiver may wait this long before declaring it lost.
    public var restartGrace: Duration?
    /// The sender's host checks that have failed (names), as the peer's evacuation rule needs them.
    public var failingHostChecks: [String]

    public init(
        clusterName: String, sender: String, network: Int, incarnation: UInt64, sequence: UInt64,
        timestamp: MonotonicInstant, echo: (incarnation: UInt64, timestamp: MonotonicInstant)? = nil,
        vms: [VMSummary] = [], capacity: Resources? = nil, restartGrace: Duration? = nil, failingHostChecks: [String] = []
    ) {
        self.failingHostChecks = failingHostChecks
        self.clusterName = clusterName
        self.sender = sender
        self.network = network
        self.incarnation = incarnation
        self.sequence = sequence
        self.timestamp = timestamp
        self.echo = echo
        self.vms = vms
        self.capacity = capacity
        self.restartGrace = restartGrace
    }

    public static func == (lhs: Heartbeat, rhs: Heartbeat) -> Bool {
        lhs.clusterName == rhs.clusterName && lhs.sender == rhs.sender && lhs.network == rhs.network
            && lhs.incarnation == rhs.incarnation && lhs.sequence == rhs.sequence && lhs.timestamp == rhs.timestamp
            && lhs.echo?.incarnation == rhs.echo?.incarnation && lhs.echo?.timestamp == rhs.echo?.timestamp
            && lhs.vms == rhs.vms && lhs.capacity == rhs.capacity
            && lhs.restartGrace == rhs.restartGrace && lhs.failingHostChecks == rhs.failingHostChecks
    }

    /// The authenticated payload.
    public func encode(key: SymmetricKey) throws(HeartbeatError) -> [UInt8] {
        var bytes = Heartbeat.magic
        bytes.append(failingHostChecks.isEmpty ? 3 : 4)
        guard (0...255).contains(network) else { throw .fieldTooLong("network index \(network)") }
        bytes.append(UInt8(network))
        try appendString(clusterName, "cluster name", to: &bytes)
        try appendString(sender, "sender name", to: &bytes)
        appendUInt64(incarnation, to: &bytes)
        appendUInt64(sequence, to: &bytes)
        appendUInt64(UInt64(bitPattern: timestamp.nanoseconds), to: &bytes)
        appendUInt64(echo?.incarnation ?? 0, to: &bytes)
        appendUInt64(UInt64(bitPattern: echo?.timestamp.nanoseconds ?? 0), to: &bytes)
        guard let capacityFields = Self.capacityFields(capacity) else { throw .fieldTooLong("capacity \(capacity!)") }
        appendUInt32(capacityFields.vcpus, to: &bytes)
        appendUInt32(capacityFields.memoryMiB, to: &bytes)
        let graceMilliseconds = restartGrace.map { $0.components.seconds * 1000 + $0.components.attoseconds / 1_000_000_000_000_000 } ?? 0
        guard let grace = UInt32(exactly: max(0, graceMilliseconds)) else { throw .fieldTooLong("restart grace \(restartGrace!)") }
        appendUInt32(grace, to: &bytes)
        guard vms.count <= UInt16.max else { throw .fieldTooLong("VM summary (\(vms.count) entries)") }
        bytes.append(contentsOf: [UInt8(vms.count >> 8), UInt8(vms.count & 0xff)])
        for vm in vms {
            try appendString(vm.name, "VM name", to: &bytes)
            bytes.append(ModuleState.allCases.firstIndex(of: vm.state).map(UInt8.init) ?? 0)
            bytes.append(ReplicaState.allCases.firstIndex(of: vm.replica).map(UInt8.init) ?? 0)
            guard vm.volumes.count <= 255 else { throw .fieldTooLong("VM \(vm.name): \(vm.volumes.count) volumes, at most 255") }
            bytes.append(UInt8(vm.volumes.count))
            for volume in vm.volumes {
                for value in [volume.current, volume.bitmap, volume.history[0], volume.history[1]] { appendUInt64(value, to: &bytes) }
                bytes.append(volume.consistency.rawValue | (volume.crashedPrimary ? 4 : 0) | (volume.answeredWithoutPeer ? 8 : 0))
            }
        }
        if !failingHostChecks.isEmpty {
            guard failingHostChecks.count <= 255 else { throw .fieldTooLong("failing host checks (\(failingHostChecks.count), at most 255)") }
            bytes.append(UInt8(failingHostChecks.count))
            for check in failingHostChecks { try appendString(check, "host check name", to: &bytes) }
        }
        bytes.append(contentsOf: HMAC<SHA256>.authenticationCode(for: bytes, using: key))
        return bytes
    }

    /// The largest datagram a heartbeat is split to fit: 1200 bytes, like QUIC's minimum, so one
    /// crosses any path of MTU ≥ 1280 (IPv6's minimum; a tunnel's overhead included) unfragmented —
    /// a lost fragment loses the whole datagram, and some networks drop fragments outright.
    public static let maximumDatagram = 1200

    /// This host's state as one or more heartbeats, each within `maximumDatagram` bytes: every
    /// part is a whole heartbeat (liveness, echo, capacity, grace) carrying a run of the VM
    /// summaries, numbered from `firstSequence` up, so the receiver needs no reassembly — it merges
    /// each part's summaries by VM name, and a lost part delays only its VMs' news by one
    /// interval. One VM's summary alone over the limit is sent in a part of its own (its name and
    /// volume count are bounded; nothing is dropped).
    public static func parts(
        clusterName: String, sender: String, network: Int, incarnation: UInt64, firstSequence: UInt64,
        timestamp: MonotonicInstant, echo: (incarnation: UInt64, timestamp: MonotonicInstant)? = nil,
        vms: [VMSummary], capacity: Resources? = nil, restartGrace: Duration? = nil, failingHostChecks: [String] = [], key: SymmetricKey,
        maximumDatagram: Int = Heartbeat.maximumDatagram
    ) throws(HeartbeatError) -> [[UInt8]] {
        func part(_ sequence: UInt64, _ vms: ArraySlice<VMSummary>) throws(HeartbeatError) -> [UInt8] {
            try Heartbeat(
                clusterName: clusterName, sender: sender, network: network, incarnation: incarnation, sequence: sequence,
                timestamp: timestamp, echo: echo, vms: Array(vms), capacity: capacity, restartGrace: restartGrace,
                failingHostChecks: failingHostChecks
            ).encode(key: key)
        }
        let empty = try part(firstSequence, [])
        guard !vms.isEmpty else { return [empty] }
        var datagrams: [[UInt8]] = []
        var start = vms.startIndex, size = empty.count
        for index in vms.indices {
            let summarySize = VMSummary.encodedSize(vms[index])
            if index > start, size + summarySize > maximumDatagram {
                datagrams.append(try part(firstSequence + UInt64(datagrams.count), vms[start..<index]))
                start = index
                size = empty.count
            }
            size += summarySize
        }
        datagrams.append(try part(firstSequence + UInt64(datagrams.count), vms[start...]))
        return datagrams
    }

    private func appendString(_ string: String, _ what: String, to bytes: inout [UInt8]) throws(HeartbeatError) {
        let utf8 = Array(string.utf8)
        guard utf8.count <= 255 else { throw .fieldTooLong("\(what) (\(utf8.count) bytes, at most 255)") }
        bytes.append(UInt8(utf8.count))
        bytes.append(contentsOf: utf8)
    }

    /// (0, 0) for unknown; nil if a value does not fit the field.
    private static func capacityFields(_ capacity: Resources?) -> (vcpus: UInt32, memoryMiB: UInt32)? {
        guard let capacity else { return (0, 0) }
        guard let vcpus = UInt32(exactly: capacity.vcpus), let memory = UInt32(exactly: capacity.memoryMiB) else { return nil }
        return (vcpus, memory)
    }

    private func appendUInt32(_ value: UInt32, to bytes: inout [UInt8]) {
        for shift in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt32(shift))) }
    }

    private func appendUInt64(_ value: UInt64, to bytes: inout [UInt8]) {
        for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
    }

    /// Parses and authenticates a payload without any replay state (see `HeartbeatDecoder` for that).
    /// The tag is checked before any field is interpreted: nothing unauthenticated is trusted.
    public static func decode(_ bytes: [UInt8], key: SymmetricKey) throws(HeartbeatError) -> Heartbeat {
        var minimum = magic.count + 2 + 2 + 8 * 5 + 2 + tagLength
        guard bytes.count >= magic.count else { throw .truncated(needed: minimum, available: bytes.count) }
        guard Array(bytes[0..<magic.count]) == magic else { throw .badMagic }
        guard bytes.count >= magic.count + 1 else { throw .truncated(needed: minimum, available: bytes.count) }
        let received = bytes[magic.count]
        guard (1...version).contains(received) else { throw .unsupportedVersion(received) }
        if received >= 2 { minimum += 12 }
        guard bytes.count >= minimum else { throw .truncated(needed: minimum, available: bytes.count) }
        let body = bytes[0..<(bytes.count - tagLength)]
        let tag = bytes[(bytes.count - tagLength)...]
        guard HMAC<SHA256>.isValidAuthenticationCode(Array(tag), authenticating: Array(body), using: key) else {
            throw .authenticationFailed
        }
        var reader = ByteReader(bytes: Array(body), offset: magic.count + 1)
        let network = Int(try reader.uint8())
        let cluster = try reader.string("cluster name")
        let sender = try reader.string("sender name")
        let incarnation = try reader.uint64()
        let sequence = try reader.uint64()
        let timestamp = MonotonicInstant(nanoseconds: Int64(bitPattern: try reader.uint64()))
        let echoIncarnation = try reader.uint64()
        let echoTimestamp = MonotonicInstant(nanoseconds: Int64(bitPattern: try reader.uint64()))
        var capacity: Resources?
        var restartGrace: Duration?
        if received >= 2 {
            let vcpus = try reader.uint32(), memory = try reader.uint32()
            if vcpus != 0 || memory != 0 { capacity = Resources(vcpus: Int(vcpus), memoryMiB: Int(memory)) }
            let grace = try reader.uint32()
            if grace != 0 { restartGrace = .milliseconds(grace) }
        }
        let count = Int(try reader.uint8()) << 8 | Int(try reader.uint8())
        var vms: [VMSummary] = []
        for index in 0..<count {
            let name = try reader.string("VM name \(index)")
            let stateCode = Int(try reader.uint8())
            let replicaCode = Int(try reader.uint8())
            guard stateCode < ModuleState.allCases.count else { throw .malformed("VM \(name): module state code \(stateCode)") }
            guard replicaCode < ReplicaState.allCases.count else { throw .malformed("VM \(name): replica state code \(replicaCode)") }
            var volumes: [GenerationSummary] = []
            if received >= 3 {
                for volume in 0..<Int(try reader.uint8()) {
                    let current = try reader.uint64(), bitmap = try reader.uint64()
                    let history = [try reader.uint64(), try reader.uint64()]
                    let flags = try reader.uint8()
                    guard flags & ~15 == 0, let consistency = GenerationSummary.Consistency(rawValue: flags & 3) else {
                        throw .malformed("VM \(name) volume \(volume): flags \(flags)")
                    }
                    volumes.append(
                        GenerationSummary(current: current, bitmap: bitmap, history: history, consistency: consistency, crashedPrimary: flags & 4 != 0,
                            answeredWithoutPeer: flags & 8 != 0))
                }
            }
            vms.append(
                VMSummary(name: name, state: ModuleState.allCases[stateCode], replica: ReplicaState.allCases[replicaCode], volumes: volumes))
        }
        var failing: [String] = []
        if received >= 4 {
            for index in 0..<Int(try reader.uint8()) { failing.append(try reader.string("host check name \(index)")) }
        }
        guard reader.isAtEnd else { throw .malformed("\(reader.remaining) trailing bytes") }
        return Heartbeat(
            clusterName: cluster, sender: sender, network: network, incarnation: incarnation, sequence: sequence,
            timestamp: timestamp, echo: echoIncarnation == 0 ? nil : (echoIncarnation, echoTimestamp), vms: vms,
            capacity: capacity, restartGrace: restartGrace, failingHostChecks: failing)
    }
}

/// Bounds-checked big-endian reading; every shortfall is a `truncated` error, never a trap.
struct ByteReader {
    let bytes: [UInt8]
    var offset: Int

    var isAtEnd: Bool { offset == bytes.count }
    var remaining: Int { bytes.count - offset }

    mutating func uint8() throws(HeartbeatError) -> UInt8 {
        guard offset < bytes.count else { throw .truncated(needed: offset + 1, available: bytes.count) }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func uint32() throws(HeartbeatError) -> UInt32 { try integer() }

    mutating func uint64() throws(HeartbeatError) -> UInt64 { try integer() }

    private mutating func integer<T: FixedWidthInteger & UnsignedInteger>() throws(HeartbeatError) -> T {
        let size = T.bitWidth / 8
        guard offset + size <= bytes.count else { throw .truncated(needed: offset + size, available: bytes.count) }
        var value: T = 0
        for byte in bytes[offset..<(offset + size)] { value = value << 8 | T(byte) }
        offset += size
        return value
    }

    mutating func string(_ what: String) throws(HeartbeatError) -> String {
        let length = Int(try uint8())
        guard offset + length <= bytes.count else { throw .truncated(needed: offset + length, available: bytes.count) }
        defer { offset += length }
        guard let string = String(validating: bytes[offset..<(offset + length)], as: UTF8.self) else {
            throw .malformed("\(what) is not UTF-8")
        }
        return string
    }
}
