/// What one volume's replication is doing, for `vmha status` and tests.
public struct ReplicationStatus: Sendable, Codable, Equatable {
    /// `ReplicationLinkMachine`'s states.
    public enum Link: String, Sendable, Codable, CaseIterable {
        case standalone, connecting, handshaking, deciding, syncSource, syncTarget, connected, splitBrain, refused
    }

    public var link: Link = .standalone
    public var peerHost: String?
    /// Bytes to resync when the current resync started, and done so far.
    public var resyncTotalBytes: UInt64 = 0
    public var resyncDoneBytes: UInt64 = 0
    /// Bytes of resync data actually sent (holes travel as a 16-byte marker).
    public var resyncSentBytes: UInt64 = 0
    public var resyncSeconds: Double = 0
    /// data, checksum or verify.
    public var resyncMethod: String?
    /// Bytes an online verify found different on the peer (now marked dirty).
    public var verifyMismatchBytes: UInt64 = 0
    /// Resyncs begun and finished on this link object: a reader of successive statuses tells a
    /// new resync from the same one by these.
    public var resyncsStarted: Int = 0
    public var resyncsCompleted: Int = 0
    /// Times the link was attached (handshake and state exchange done): more than one means it
    /// went down and came back.
    public var attachments: Int = 0
    public var lastError: String?
    /// The last split brain a policy settled: which side's changes were discarded (kept until
    /// the next one, so an operator sees it after the resync finished).
    public var splitBrainResolved: String?

    public init() {}
}

extension ReplicationStatus {
    /// What the running resync has still to do.
    public var resyncRemainingBytes: UInt64 { resyncTotalBytes &- min(resyncDoneBytes, resyncTotalBytes) }
}
