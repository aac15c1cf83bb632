/// Why a peer link ended or could not be established.
public enum PeerLinkError: Error, CustomStringConvertible, Sendable {
    case closedDuringHandshake
    case handshakeFailed(PeerHandshakeError)
    case closedByPeer
    case timedOut
    case peerDead
    case unexpected(String)
    case refused(String)
    case splitBrain(String)

    public var description: String {
        switch self {
        case .closedDuringHandshake: "the peer closed the connection during the handshake"
        case .handshakeFailed(let error): "handshake failed: \(error)"
        case .closedByPeer: "the peer closed the connection"
        case .timedOut: "timed out"
        case .peerDead: "the peer stopped answering (keepalive timeout)"
        case .unexpected(let what): "unexpected message: \(what)"
        case .refused(let why): "refused: \(why)"
        case .splitBrain(let why): "split brain: \(why)"
        }
    }
}
