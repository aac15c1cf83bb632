import SystemPackage

/// The file a ring operation targets: a plain descriptor, or an index into the ring's
/// registered file table (saves the kernel an fget/fput per request).
public struct IOHandle: Sendable, Hashable {
    @usableFromInline let raw: Int32
    @usableFromInline let isRegistered: Bool

    @inlinable
    public static func file(_ fd: FileDescriptor) -> IOHandle {
        IOHandle(raw: fd.rawValue, isRegistered: false)
    }

    /// The file at `index` of the table passed to ``IOUring/registerFiles(_:)``.
    @inlinable
    public static func registered(_ index: Int) -> IOHandle {
        IOHandle(raw: Int32(index), isRegistered: true)
    }

    @usableFromInline init(raw: Int32, isRegistered: Bool) {
        self.raw = raw
        self.isRegistered = isRegistered
    }
}
