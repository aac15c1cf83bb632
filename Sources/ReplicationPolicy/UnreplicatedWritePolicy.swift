/// What a primary does with a guest change its peer did not get (link down or timed out).
public enum UnreplicatedWritePolicy: Sendable, Equatable {
    /// Complete it; its range is dirty in the bitmap. Flag mode, no witness, or HA mode while
    /// holding the witness's vote.
    case complete
    /// Do not answer it until the peer has it (resync) or the policy changes. HA mode without
    /// the vote: the peer may take the VM over without this change (docs/witness.md).
    case hold
    /// Answer it with EIO; QEMU (error_policy=stop) pauses the guest. Fenced, or giving the VM up:
    /// QEMU's own pause drains in-flight requests, so held ones must end first.
    case fail
}
