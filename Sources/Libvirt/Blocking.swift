import Dispatch

/// Runs blocking libvirt calls off Swift's cooperative pool.
///
/// Each body reads libvirt's thread-local error itself, before returning, so no error is
/// lost across the hop back to the caller. A body that throws only ``LibvirtError`` (say so
/// in the closure: `{ () throws(LibvirtError) -> T in … }`) keeps the error typed for its caller.
enum Blocking {
    private static let queue = DispatchQueue(label: "vmha.libvirt.blocking", attributes: .concurrent)

    static func run<T: Sendable, E: Error>(_ body: @escaping @Sendable () throws(E) -> T) async throws(E) -> T {
        let result: Result<T, E> = await withCheckedContinuation { continuation in
            queue.async {
                continuation.resume(returning: Result { () throws(E) -> T in try body() })
            }
        }
        return try result.get()
    }
}
