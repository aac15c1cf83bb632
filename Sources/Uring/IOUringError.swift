import SystemCalls
import SystemPackage

/// Why a ring could not be created or used.
public enum IOUringError: Error, CustomStringConvertible, Sendable {
    /// The kernel refuses io_uring here (seccomp profile of a container, `kernel.io_uring_disabled`,
    /// or a kernel without it). vmha cannot run its data path without it.
    case unavailable(Errno)
    /// The ring's setup failed for another reason (e.g. `io_uring_queue_init_params`: `ENOMEM`
    /// from locked-memory limits).
    case setupFailed(SystemCallError)
    /// The ring is shutting down or shut down; no new requests are accepted.
    case shutDown

    public var description: String {
        switch self {
        case .unavailable(let errno):
            return "io_uring is not available on this system (\(errno)); "
                + "if running in a container, its seccomp profile must allow io_uring_setup/enter/register"
        case .setupFailed(let error):
            return "io_uring setup failed: \(error)"
        case .shutDown:
            return "the io_uring ring is shut down"
        }
    }
}
