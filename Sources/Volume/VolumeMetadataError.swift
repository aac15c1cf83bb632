/// Why a metadata file could not be used. Never answered by silently
/// re-initializing: losing GIs or the bitmap would risk serving stale data.
public enum VolumeMetadataError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Neither superblock copy starts with `VMHAMETA`: not our file.
    case notVmhaMetadata
    /// A superblock with our magic but a format version we do not understand.
    case unsupportedVersion(found: UInt32)
    /// Both copies are damaged (reason names what is wrong with each).
    case corrupt(String)
    /// The metadata describes a different volume geometry than the image.
    case mismatch(field: String, expected: UInt64, found: UInt64)
    /// Values passed to create metadata are invalid.
    case invalidConfiguration(String)

    public var description: String {
        switch self {
        case .notVmhaMetadata: "not a vmha metadata file (no VMHAMETA superblock)"
        case .unsupportedVersion(let v): "unsupported metadata format version \(v) (this build reads versions \(VolumeMetadata.readableVersions.lowerBound)–\(VolumeMetadata.readableVersions.upperBound))"
        case .corrupt(let r): "metadata corrupt: \(r)"
        case .mismatch(let f, let e, let x): "metadata \(f) is \(x) but the volume has \(e)"
        case .invalidConfiguration(let r): "invalid metadata configuration: \(r)"
        }
    }
}
