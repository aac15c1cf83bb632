/// DRBD-style generation identifiers (GIs): random 64-bit tags naming "data
/// generations" of a replicated volume, compared at reconnect to decide which
/// side has the newer data and whether the dirty bitmap suffices to catch up.
///
/// - `current`: the generation of the data on this disk right now.
/// - `bitmap`: the generation the peer was at when this side started tracking
///   changes in its dirty bitmap (0 = not tracking). If the peer's `current`
///   equals my `bitmap`, my bitmap holds exactly what the peer is missing.
/// - `history`: the two previous `bitmap` generations, so a peer that is
///   merely *older* (but whose changes are not tracked) is recognised as
///   related (full sync) rather than unrelated.
/// - `origin`: how `current` began (see ``GenerationOrigin``); not an identifier, so not
///   compared by the resync decision, only by the split-brain policies.
///
/// The rules are documented as a table in `docs/format.md`.
public struct GenerationIdentifiers: Sendable, Hashable {
    /// GI of a volume that has never held data ("just created").
    public static let justCreated: UInt64 = 0

    public var current: UInt64
    public var bitmap: UInt64
    /// `history[0]` is the newer. Always two entries.
    public private(set) var history: [UInt64]
    public var origin: GenerationOrigin

    public init(
        current: UInt64 = GenerationIdentifiers.justCreated, bitmap: UInt64 = 0, history: [UInt64] = [0, 0],
        origin: GenerationOrigin = .unknown
    ) {
        self.current = current
        self.bitmap = bitmap
        self.history = Array((history + [0, 0]).prefix(2))
        self.origin = origin
    }

    /// Starts a new data generation (this side becomes primary, or loses its
    /// peer while primary): the old `current` becomes the bitmap generation, so
    /// the changes from now on are exactly what the bitmap tracks.
    /// `newCurrent` must be a fresh random non-zero value.
    public mutating func startNewGeneration(_ newCurrent: UInt64, origin: GenerationOrigin) {
        if bitmap != 0 {
            // Already tracking since an older generation: keep that link as history.
            pushHistory(bitmap)
        }
        bitmap = current
        current = newCurrent
        self.origin = origin
    }

    /// Resync finished on the sync source: both sides are now at `current`; the
    /// bitmap generation retires into history.
    public mutating func resyncFinishedAsSource() {
        if bitmap != 0 { pushHistory(bitmap) }
        bitmap = 0
    }

    /// Resync finished on the sync target: take the source's generation.
    public mutating func resyncFinishedAsTarget(sourceCurrent: UInt64) {
        if current != sourceCurrent && current != Self.justCreated { pushHistory(current) }
        current = sourceCurrent
        bitmap = 0
        origin = .unknown
    }

    /// A split-brain policy chose this side as the victim: it gives up its own generation for
    /// the source's and resyncs from it. The discarded generation goes to history, so the
    /// metadata still shows which data was thrown away.
    public mutating func discardForSplitBrain(sourceCurrent: UInt64) {
        pushHistory(current)
        current = sourceCurrent
        origin = .unknown
    }

    mutating func pushHistory(_ value: UInt64) {
        history = [value, history[0]]
    }
}
