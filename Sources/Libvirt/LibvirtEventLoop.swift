import CLibvirt
import Foundation

/// libvirt's default event loop, run forever on one dedicated thread.
///
/// Events, keepalives and close callbacks are only delivered while this loop runs, and the
/// implementation must be registered before the first connection is opened, so every
/// ``LibvirtConnection`` calls ``ensureRunning()`` first.
enum LibvirtEventLoop {
    private static let started: Bool = {
        // Registering after a connection exists leaves that connection without events.
        // libvirt prints every error to stderr by default; errors reach callers as LibvirtError.
        virSetErrorFunc(nil, silenceLibvirtErrors)
        precondition(virEventRegisterDefaultImpl() == 0, "virEventRegisterDefaultImpl failed")
        let thread = Thread {
            while true {
                if virEventRunDefaultImpl() < 0 {
                    // Only fails on internal errors; do not spin.
                    Thread.sleep(forTimeInterval: 0.1)
                }
            }
        }
        thread.name = "libvirt-events"
        thread.start()
        return true
    }()

    static func ensureRunning() {
        _ = started
    }
}
