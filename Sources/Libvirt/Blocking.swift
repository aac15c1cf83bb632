import Dispatch

/// Runs blocking libvirt calls off Swift's cooperative pool.
///
/// Each body reads libvirt's thread-local error itself, before returning, so no error is
/// lost across the hop back to the caller.
enum Blocking {
    private static let queue = DispatchQueue(label: "vmha.libvirt.blocking", attributes: .concurrent)

    static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async {
                continuation.resume(with: Result { try body() })
            }
        }
    }
}
