import CLibvirt

// C callbacks live at file scope in a non-main file: closures in main.swift would be inferred
// @MainActor and trap when libvirt calls them on its event thread. The opaque pointer is a
// retained `LibvirtConnection`, released by `releaseContextTrampoline` when libvirt drops it.

typealias DomainLifecycleCallback = @convention(c) (
    OpaquePointer?, OpaquePointer?, Int32, Int32, UnsafeMutableRawPointer?
) -> Int32

func domainLifecycleTrampoline(
    _ conn: OpaquePointer?, _ dom: OpaquePointer?, _ event: Int32, _ detail: Int32,
    _ opaque: UnsafeMutableRawPointer?
) -> Int32 {
    guard let opaque else { return 0 }
    Unmanaged<LibvirtConnection>.fromOpaque(opaque).takeUnretainedValue()
        .handleLifecycle(domain: dom, event: event, detail: detail)
    return 0
}

func connectionClosedTrampoline(_ conn: OpaquePointer?, _ reason: Int32, _ opaque: UnsafeMutableRawPointer?) {
    guard let opaque else { return }
    Unmanaged<LibvirtConnection>.fromOpaque(opaque).takeUnretainedValue().handleClosed(conn, reason: reason)
}

func releaseContextTrampoline(_ opaque: UnsafeMutableRawPointer?) {
    guard let opaque else { return }
    Unmanaged<LibvirtConnection>.fromOpaque(opaque).release()
}

func silenceLibvirtErrors(_ userData: UnsafeMutableRawPointer?, _ error: virErrorPtr?) {}
