import Logging
import Sockets
import Uring

/// Asks a peer's vmhad for its part of a support bundle over the authenticated peer link
/// (``PeerSupportRequest``): connect, authenticate with the cluster key, one request, the
/// chunks of one answer, close.
public enum PeerSupportClient {
    /// The whole answer, or the reason there is none (unreachable, refused, timed out, cut off).
    public static func fetch(
        from address: TCPSocket.Address, configuration: PeerHandshake.Configuration, sinceSeconds: UInt64, timeout: Duration = .seconds(60),
        ring: IOUring, logger: Logger
    ) async throws -> [UInt8] {
        try await withDeadline(timeout, ring: ring) {
            let connection = try await PeerConnection.connect(to: address, configuration: configuration, ring: ring, logger: logger)
            defer { connection.close() }
            try await connection.send(PeerSupportRequest(sinceSeconds: sinceSeconds).encoded())
            var answer: [UInt8] = []
            do {
                try await connection.receiveMessages { message in
                    switch message {
                    case .supportData(let data):
                        guard data.byteOffset == answer.count else {
                            throw PeerLinkError.unexpected("SUPPORT_DATA at \(data.byteOffset), expected \(answer.count)")
                        }
                        answer += data.chunk
                        if data.isLast { throw Done() }
                    case .ping(let ping):
                        try await connection.send(PeerPong(token: ping.token).encoded())
                    case .pong: break
                    case .goodbye(let goodbye): throw PeerLinkError.refused("peer said goodbye: \(goodbye.message)")
                    default: throw PeerLinkError.unexpected("\(message.frameType) in answer to SUPPORT_REQUEST")
                    }
                }
            } catch is Done {
                return answer
            }
            throw PeerLinkError.closedByPeer
        }
    }

    private struct Done: Error {}
}
