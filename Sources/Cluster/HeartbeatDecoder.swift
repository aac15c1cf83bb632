import Crypto

/// Receiving side of the heartbeat: authenticates, checks the cluster and rejects replays.
///
/// Replay protection is per (sender, network): each network carries its own copy of a packet with
/// the same sequence, so one shared counter would reject the second copy. A newer incarnation (the
/// sender restarted) resets the counters; an older one is refused, which is why incarnations must
/// strictly increase across restarts (e.g. a counter persisted in the state directory).
public struct HeartbeatDecoder: Sendable {
    /// Raw key bytes: swift-crypto's `SymmetricKey` is not `Sendable` on Linux.
    private let keyBytes: [UInt8]
    public let clusterName: String
    public let localHost: String
    private var incarnations: [String: UInt64] = [:]
    private var highestSequence: [String: [Int: UInt64]] = [:]

    public init(key: SymmetricKey, clusterName: String, localHost: String) {
        self.keyBytes = key.withUnsafeBytes { Array($0) }
        self.clusterName = clusterName
        self.localHost = localHost
    }

    /// Decodes a payload that arrived on network `network`; on success the packet is recorded so
    /// the same or an older one is refused next time.
    public mutating func decode(_ bytes: [UInt8], receivedOn network: Int) throws(HeartbeatError) -> Heartbeat {
        let heartbeat = try Heartbeat.decode(bytes, key: SymmetricKey(data: keyBytes))
        guard heartbeat.clusterName == clusterName else { throw .wrongCluster(heartbeat.clusterName) }
        guard heartbeat.sender != localHost else { throw .fromSelf }
        guard heartbeat.network == network else { throw .networkMismatch(claimed: heartbeat.network, receivedOn: network) }
        let sender = heartbeat.sender
        if let current = incarnations[sender] {
            if heartbeat.incarnation < current {
                throw .staleIncarnation(sender: sender, incarnation: heartbeat.incarnation, current: current)
            }
            if heartbeat.incarnation > current { highestSequence[sender] = [:] }
        }
        if let highest = highestSequence[sender]?[network], heartbeat.incarnation == incarnations[sender],
            heartbeat.sequence <= highest
        {
            throw .replayedSequence(sender: sender, network: network, sequence: heartbeat.sequence, highest: highest)
        }
        incarnations[sender] = heartbeat.incarnation
        highestSequence[sender, default: [:]][network] = heartbeat.sequence
        return heartbeat
    }
}
