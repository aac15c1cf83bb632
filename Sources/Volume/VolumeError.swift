import SystemPackage

/// Why a volume could not be opened or an operation on it failed. Each case names the file.
public enum VolumeError: Error, CustomStringConvertible, Sendable {
    case imageMissing(path: String)
    case imageUnusable(path: String, reason: String)
    case metadata(path: String, VolumeMetadataError)
    case metadataIO(path: String, Errno)
    case io(path: String, Errno)
    case outOfRange(offset: UInt64, length: UInt64, size: UInt64)
    case closed(name: String)

    public var description: String {
        switch self {
        case .imageMissing(let path): "image \(path) does not exist"
        case .imageUnusable(let path, let reason): "image \(path) cannot be used: \(reason)"
        case .metadata(let path, let error): "metadata \(path): \(error)"
        case .metadataIO(let path, let errno): "metadata \(path): I/O error \(errno)"
        case .io(let path, let errno): "image \(path): I/O error \(errno)"
        case .outOfRange(let offset, let length, let size):
            "range \(offset)+\(length) is beyond the volume size \(size)"
        case .closed(let name): "volume \(name) is closed"
        }
    }

    /// The errno an NBD reply carries for this error.
    public var errno: Errno {
        switch self {
        case .io(_, let e), .metadataIO(_, let e): e
        case .outOfRange: .invalidArgument
        case .closed: .socketShutdown
        default: .ioError
        }
    }
}
