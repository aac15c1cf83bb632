/// What to do when both replicas changed since they were last in sync (DRBD's after-sb
/// policies). Both hosts must be configured alike: they decide independently and must agree.
public enum SplitBrainPolicy: String, Sendable, Hashable, CaseIterable {
    /// Never resolve: stop replicating and report (the default).
    case disconnect
    /// Discard the changes of the side that became primary only after the split.
    case discardYoungerPrimary = "discard-younger-primary"
    /// Discard the changes of the side that changed fewer grains since the split.
    case discardLeastChanges = "discard-least-changes"
    /// Discard the changes of a side that changed nothing since the split.
    case discardZeroChanges = "discard-zero-changes"
}
