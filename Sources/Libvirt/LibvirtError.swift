import CLibvirt

/// An error reported by libvirt, or by this binding when libvirt cannot be reached.
///
/// libvirt keeps the last error in thread-local storage, so ``LibvirtError/last(operation:)``
/// must be called on the same thread, in the same synchronous call, as the failing C function.
public struct LibvirtError: Error, Sendable, CustomStringConvertible {
    /// `virErrorNumber` (e.g. `VIR_ERR_NO_DOMAIN` = 42); 0 when the binding itself failed.
    public var code: Int32
    /// `virErrorDomain`: which libvirt subsystem raised it.
    public var domain: Int32
    public var message: String
    /// The binding operation that failed, e.g. `"virDomainCreate"`.
    public var operation: String

    public init(code: Int32, domain: Int32, message: String, operation: String) {
        self.code = code
        self.domain = domain
        self.message = message
        self.operation = operation
    }

    /// Reads (and does not reset) libvirt's thread-local last error.
    static func last(operation: String) -> LibvirtError {
        guard let err = virGetLastError() else {
            return LibvirtError(code: 0, domain: 0, message: "unknown libvirt error", operation: operation)
        }
        let message = err.pointee.message.map { String(cString: $0) } ?? "no message"
        return LibvirtError(code: err.pointee.code, domain: err.pointee.domain, message: message, operation: operation)
    }

    static func notConnected(operation: String) -> LibvirtError {
        LibvirtError(code: 0, domain: 0, message: "not connected to libvirtd (reconnecting)", operation: operation)
    }

    /// `true` for `VIR_ERR_NO_DOMAIN`.
    public var isNoDomain: Bool { code == Int32(VIR_ERR_NO_DOMAIN.rawValue) }

    public var description: String {
        "\(operation): \(message) (code \(code), domain \(domain))"
    }
}

/// Throws the current libvirt error if `rc` is negative.
@inline(__always)
func check(_ rc: Int32, _ operation: String) throws(LibvirtError) {
    if rc < 0 { throw LibvirtError.last(operation: operation) }
}
