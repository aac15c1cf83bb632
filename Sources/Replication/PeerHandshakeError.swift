/// Why a peer handshake failed. Every case ends the connection; the reasons
/// are distinct so logs (and the operator) can tell a misconfigured key from a
/// wrong cluster, an old build, or an attack.
public enum PeerHandshakeError: Error, Sendable, Hashable, CustomStringConvertible {
    /// No protocol version in common.
    case incompatibleVersion(local: ClosedRange<UInt16>, peer: ClosedRange<UInt16>)
    /// The peer's HELLO names another cluster.
    case clusterMismatch(local: String, peer: String)
    /// The peer is not the configured replication partner.
    case unexpectedPeer(expected: String, found: String)
    /// The peer's RESPONSE did not verify: wrong cluster key, or a replayed
    /// or reflected response.
    case authenticationFailed
    /// The peer's HELLO carried our own nonce or our own host name: it is
    /// reflecting our challenge back (or we connected to ourselves).
    case reflectedChallenge
    /// A frame arrived that is not the next handshake step (in particular any
    /// data frame before both sides are authenticated).
    case unauthenticatedFrame(PeerFrameType)
    /// The peer's CHALLENGE disagrees with its HELLO or with the version we computed.
    case inconsistentChallenge(String)
    /// The byte stream itself was malformed.
    case protocolError(PeerProtocolError)
    /// The peer refused us.
    case refusedByPeer(PeerRefuse.Reason, message: String)

    public var description: String {
        switch self {
        case .incompatibleVersion(let l, let p):
            return "no common protocol version: local \(l.lowerBound)...\(l.upperBound), peer \(p.lowerBound)...\(p.upperBound)"
        case .clusterMismatch(let l, let p):
            return "peer belongs to cluster '\(p)', not '\(l)'"
        case .unexpectedPeer(let e, let f):
            return "peer host is '\(f)', expected '\(e)'"
        case .authenticationFailed:
            return "peer's RESPONSE does not verify with the cluster key"
        case .reflectedChallenge:
            return "peer reflected our own nonce or host name"
        case .unauthenticatedFrame(let t):
            return "\(t) frame received before authentication completed"
        case .inconsistentChallenge(let why):
            return "peer's CHALLENGE is inconsistent: \(why)"
        case .protocolError(let e):
            return "protocol error during handshake: \(e)"
        case .refusedByPeer(let r, let m):
            return "peer refused the connection (\(r)): \(m)"
        }
    }
}
