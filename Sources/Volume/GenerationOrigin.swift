/// How a volume's current data generation began. After a split brain both sides started one of
/// their own, and this says which of them became primary only after the split: what
/// discard-younger-primary compares (DRBD keeps the same fact in the lowest bit of its UUIDs).
public enum GenerationOrigin: UInt8, Sendable, Hashable {
    /// Not recorded: metadata format 1, a new volume, or a generation taken over from a sync source.
    case unknown = 0
    /// This side was already primary: it lost its peer and went on writing (the older primary).
    case continuedAsPrimary = 1
    /// This side became primary without its peer (the younger primary).
    case promotion = 2
}
