/// Errors from creating, mutating, merging or decoding a ``DirtyBitmap``.
public enum DirtyBitmapError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The grain size is not a power of two of at least 4 KiB.
    case invalidGrainSize(UInt64)
    /// The byte range does not lie inside the volume.
    case rangeOutOfBounds(offset: UInt64, length: UInt64, volumeSize: UInt64)
    /// Two bitmaps (or a bitmap and serialized bytes) describe different geometries.
    case geometryMismatch(expected: String, found: String)
    /// Serialized bitmap bytes are shorter than the geometry needs.
    case truncated(expectedBytes: Int, foundBytes: Int)
    /// Serialized bitmap has bits set past the last grain: the bytes are not this bitmap.
    case bitsBeyondEnd(grainCount: Int)

    public var description: String {
        switch self {
        case .invalidGrainSize(let g):
            return "invalid grain size \(g): must be a power of two >= 4096"
        case .rangeOutOfBounds(let o, let l, let s):
            return "range offset \(o) length \(l) exceeds volume size \(s)"
        case .geometryMismatch(let e, let f):
            return "bitmap geometry mismatch: expected \(e), found \(f)"
        case .truncated(let e, let f):
            return "serialized bitmap truncated: need \(e) bytes, have \(f)"
        case .bitsBeyondEnd(let n):
            return "serialized bitmap has bits set beyond grain \(n - 1)"
        }
    }
}
