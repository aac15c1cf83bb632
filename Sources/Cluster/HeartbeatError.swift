/// Why a received heartbeat was rejected. Every case names what was wrong so a misconfigured
/// peer (wrong key, wrong cluster) is diagnosable from one log line.
public enum HeartbeatError: Error, Sendable, Equatable, CustomStringConvertible {
    case truncated(needed: Int, available: Int)
    case badMagic
    case unsupportedVersion(UInt8)
    /// HMAC mismatch: wrong cluster key, or the packet was altered.
    case authenticationFailed
    case wrongCluster(String)
    /// Our own packet came back (loop or reflection).
    case fromSelf
    case staleIncarnation(sender: String, incarnation: UInt64, current: UInt64)
    case replayedSequence(sender: String, network: Int, sequence: UInt64, highest: UInt64)
    case networkMismatch(claimed: Int, receivedOn: Int)
    case malformed(String)
    /// Encoding side: a field does not fit the wire format.
    case fieldTooLong(String)

    public var description: String {
        switch self {
        case .truncated(let needed, let available): "heartbeat truncated: needed \(needed) bytes, got \(available)"
        case .badMagic: "not a vmha heartbeat (bad magic)"
        case .unsupportedVersion(let version): "heartbeat version \(version) is not supported (this vmhad reads 1 to \(Heartbeat.version))"
        case .authenticationFailed: "heartbeat HMAC does not verify: wrong cluster key or altered packet"
        case .wrongCluster(let name): "heartbeat from cluster \"\(name)\", not ours"
        case .fromSelf: "heartbeat carries our own host name (looped back or reflected)"
        case .staleIncarnation(let sender, let incarnation, let current):
            "heartbeat from \(sender) incarnation \(incarnation) is older than the current \(current)"
        case .replayedSequence(let sender, let network, let sequence, let highest):
            "heartbeat from \(sender) on network \(network) has sequence \(sequence), not above \(highest) (replay or reorder)"
        case .networkMismatch(let claimed, let receivedOn):
            "heartbeat for network \(claimed) arrived on network \(receivedOn) (crossed cabling?)"
        case .malformed(let what): "malformed heartbeat: \(what)"
        case .fieldTooLong(let what): "cannot encode heartbeat: \(what) is too long"
        }
    }
}
