import Logging
import ReplicationPolicy
import Volume

/// What a split-brain policy discarded, as both ends log it (a warning: data is about to be
/// overwritten) and keep it in their ``ReplicationStatus``.
struct SplitBrainDiscard {
    /// The policy's name, or `unanswered-changes` when the victim answered no write alone.
    var rule: String
    var volume: String
    /// Bytes set in the victim's bitmap: what it changed since both were last in sync.
    var bytes: UInt64
    var grainSize: UInt64
    /// The host whose changes are discarded, and the one whose data replaces them.
    var victim: String
    var survivor: String
    var incremental: Bool

    private var method: String { incremental ? "incremental" : "full" }

    var summary: String {
        "\(rule): discarded \(bytes) bytes (\(bytes / grainSize) grains) changed on \(victim); \(method) resync from \(survivor)"
    }

    func log(_ message: Logger.Message, to logger: Logger) {
        logger.warning(
            message,
            metadata: [
                "volume": "\(volume)", "rule": "\(rule)", "victim": "\(victim)", "survivor": "\(survivor)",
                "discarded_bytes": "\(bytes)", "discarded_grains": "\(bytes / grainSize)", "resync": "\(method)",
            ])
    }
}
