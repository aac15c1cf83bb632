import Crypto
import ReplicationPolicy
import Volume

/// Settings shared by both ends of a volume's replication.
public struct ReplicationOptions: Sendable {
    public var handshake: PeerHandshake.Configuration
    public var timing = ReplicationSession.Timing()
    /// Resync block size: large reads and frames keep a 10 Gb/s link full.
    public var resyncChunkBytes = defaultResyncChunkBytes
    public static let defaultResyncChunkBytes = 4 << 20
    /// The resync window and the small buffers count in units of this fraction of a block: an
    /// incremental resync of scattered grains keeps as much in flight as a full one of whole blocks.
    public static let resyncUnitsPerBlock = 16
    /// Resync blocks in flight (read, on the wire, or being written by the peer).
    public var resyncWindow = 16
    /// Upper bound on resync bandwidth in bytes per second (nil: the link's speed).
    public var resyncMaxRate: UInt64?
    /// What a resync keeps however slow the guest's writes get (`ResyncRateController`).
    public var resyncMinRate: UInt64 = 16 << 20
    /// The guest's average write latency the resync yields to (nil: it does not steer).
    public var resyncLatencyTarget: Duration?

    /// The rate controller's settings from these options.
    public var resyncRate: ResyncRateController.Settings {
        ResyncRateController.Settings(maxRate: resyncMaxRate, minRate: resyncMinRate, latencyTarget: resyncLatencyTarget)
    }
    /// Full syncs compare SHA-256 digests first and send only blocks that differ (DRBD's
    /// csums-alg): cheap when the peer's image is mostly right already.
    public var checksumFullSync = false
    /// Replicated frames a secondary applies at once.
    public var applyWindow = 128
    /// How a split brain found at connect time is settled; both hosts must use the same.
    public var splitBrainPolicy = SplitBrainPolicy.disconnect
    /// Delay between connection attempts.
    public var reconnectInterval: Duration = .seconds(1)

    public init(handshake: PeerHandshake.Configuration) {
        self.handshake = handshake
    }
}
