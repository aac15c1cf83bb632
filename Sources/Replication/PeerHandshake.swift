import Crypto

/// Mutual authentication of a peer link as an I/O-free state machine, for
/// both ends (the side that connected and the side that accepted).
///
/// The caller owns the socket: it sends ``start()``'s bytes right after the
/// connection is up, feeds every received chunk (any fragmentation) to
/// ``receive(_:)``, sends ``Output/bytesToSend`` in order and acts on
/// ``Output/events``:
///
/// - ``Event/authenticated(peerHost:version:remaining:)``: both sides proved
///   the cluster key. Switch to a ``PeerFrameDecoder`` for data frames and feed
///   it `remaining` first (frames the peer pipelined after its WELCOME).
/// - ``Event/failed(_:)``: send the bytes (usually a REFUSE) and close.
///
/// The caller also bounds the handshake in time (e.g. 10 s); this type has no clock.
///
/// Protocol (each side, independently and concurrently):
///
/// ```
/// send HELLO(versions, own nonce, host, cluster)
/// recv HELLO      → check cluster, version overlap, not reflected → send CHALLENGE(version, own nonce)
/// recv CHALLENGE  → check version and nonce match        → send RESPONSE(MAC(me as prover))
/// recv RESPONSE   → verify MAC(peer as prover)           → send WELCOME
/// recv WELCOME    → authenticated
/// ```
///
/// `MAC(prover) = HMAC-SHA256(cluster key, "vmha-peer-v1" || prover role ||
/// version || prover nonce || verifier nonce || prover host || verifier host
/// || cluster)` (names u16-length-prefixed). The role byte makes a side's
/// own RESPONSE useless as the peer's (replay/reflection on one connection);
/// the nonces make it fresh; the host order plus the rule "the peer's host
/// name and nonce must differ from ours" defeats reflecting a RESPONSE
/// obtained on a second connection to the same node. The MAC is checked with
/// `HMAC.isValidAuthenticationCode`, which compares in constant time.
///
/// Nothing but these frames (and REFUSE) is accepted before authentication:
/// anything else fails with ``PeerHandshakeError/unauthenticatedFrame(_:)``.
/// The link is authenticated, not encrypted (see `docs/protocol.md`).
public struct PeerHandshake: Sendable {
    public enum Role: UInt8, Sendable, Hashable {
        case connector = 1
        case acceptor = 2

        var peer: Role { self == .connector ? .acceptor : .connector }
    }

    public struct Configuration: Sendable {
        public var hostName: String
        public var clusterName: String
        /// The shared secret every node of the cluster holds (≥ 32 random bytes
        /// recommended). Kept as bytes because `SymmetricKey` is not `Sendable`.
        public var clusterKeyBytes: [UInt8]
        public var clusterKey: SymmetricKey { SymmetricKey(data: clusterKeyBytes) }
        public var versions: ClosedRange<UInt16>
        /// If set, a peer announcing another host name is refused.
        public var expectedPeerHost: String?

        public init(hostName: String, clusterName: String, clusterKey: SymmetricKey,
                    versions: ClosedRange<UInt16> = PeerProtocol.supportedVersions, expectedPeerHost: String? = nil) {
            precondition(!hostName.isEmpty && hostName.utf8.count <= PeerProtocol.maximumNameLength, "host name must be 1–255 bytes")
            precondition(!clusterName.isEmpty && clusterName.utf8.count <= PeerProtocol.maximumNameLength,
                         "cluster name must be 1–255 bytes")
            self.hostName = hostName
            self.clusterName = clusterName
            self.clusterKeyBytes = clusterKey.withUnsafeBytes { Array($0) }
            self.versions = versions
            self.expectedPeerHost = expectedPeerHost
        }
    }

    public enum Event: Sendable, Hashable {
        case authenticated(peerHost: String, version: UInt16, remaining: [UInt8])
        case failed(PeerHandshakeError)
    }

    public struct Output: Sendable, Hashable {
        public var bytesToSend: [UInt8] = []
        public var events: [Event] = []
    }

    enum State: Sendable {
        case idle
        case awaitingHello
        case awaitingChallenge(peer: PeerHello, version: UInt16)
        case awaitingResponse(peer: PeerHello, version: UInt16)
        case awaitingWelcome(peer: PeerHello, version: UInt16)
        case authenticated
        case failed
    }

    /// Handshake frames are always encoded as version 1: their layout is frozen.
    static let frameVersion = PeerProtocol.handshakeFrameVersion
    static let label = Array("vmha-peer-v1".utf8)

    public let role: Role
    public let configuration: Configuration
    let nonce: [UInt8]
    var state: State = .idle
    var decoder: PeerFrameDecoder

    /// - Parameter nonce: 32 bytes; random by default. Injectable for tests only:
    ///   a reused nonce lets a recorded RESPONSE be replayed.
    public init(role: Role, configuration: Configuration, nonce: [UInt8]? = nil) {
        self.role = role
        self.configuration = configuration
        if let nonce {
            precondition(nonce.count == PeerProtocol.nonceSize, "nonce must be 32 bytes")
            self.nonce = nonce
        } else {
            // SystemRandomNumberGenerator is getrandom(2) on Linux: cryptographically secure.
            var rng = SystemRandomNumberGenerator()
            self.nonce = (0..<PeerProtocol.nonceSize).map { _ in UInt8.random(in: .min ... .max, using: &rng) }
        }
        // Handshake frames are small; refuse anything larger than a HELLO early.
        self.decoder = PeerFrameDecoder(maximumPayloadLength: PeerFrameType.hello.payloadLengthRange.upperBound
            + PeerFrameType.refuse.payloadLengthRange.upperBound)
    }

    /// Whether the handshake has ended (authenticated or failed).
    public var isFinished: Bool {
        switch state {
        case .authenticated, .failed: return true
        default: return false
        }
    }

    /// The HELLO to send as soon as the connection is up (both roles send one
    /// without waiting, saving a round trip).
    public mutating func start() -> Output {
        guard case .idle = state else { return Output() }
        state = .awaitingHello
        var out = Output()
        PeerHello(versions: configuration.versions, nonce: nonce, hostName: configuration.hostName,
                  clusterName: configuration.clusterName)
            .encode(into: &out.bytesToSend, version: Self.frameVersion)
        return out
    }

    /// Consumes received bytes. Bytes after the end of the handshake are
    /// returned in the `authenticated` event's `remaining` (or dropped after a failure).
    public mutating func receive(_ bytes: some Sequence<UInt8>) -> Output {
        var out = Output()
        if case .idle = state { out = start() }
        if isFinished { return out }
        decoder.receive(bytes)
        while !isFinished {
            let frame: PeerFrame?
            do {
                frame = try decoder.next()
            } catch {
                fail(.protocolError(error), refuse: .protocolViolation, into: &out)
                break
            }
            guard let frame else { break }
            handle(frame, into: &out)
        }
        return out
    }

    mutating func handle(_ frame: PeerFrame, into out: inout Output) {
        let message: PeerMessage
        do {
            message = try PeerMessage(frame: frame)
        } catch {
            fail(.protocolError(error), refuse: .protocolViolation, into: &out)
            return
        }
        if case .refuse(let refuse) = message {
            // The peer is closing; answering it would be pointless.
            fail(.refusedByPeer(refuse.reason, message: refuse.message), refuse: nil, into: &out)
            return
        }
        switch (state, message) {
        case (.awaitingHello, .hello(let hello)):
            receivedHello(hello, into: &out)
        case (.awaitingChallenge(let peer, let version), .challenge(let challenge)):
            guard challenge.version == version else {
                fail(.inconsistentChallenge("version \(challenge.version), expected \(version)"),
                     refuse: .protocolViolation, into: &out)
                return
            }
            guard challenge.nonce == peer.nonce else {
                fail(.inconsistentChallenge("nonce differs from the HELLO's"), refuse: .protocolViolation, into: &out)
                return
            }
            let mac = Self.mac(key: configuration.clusterKey, prover: role, version: version,
                               proverNonce: nonce, verifierNonce: peer.nonce,
                               proverHost: configuration.hostName, verifierHost: peer.hostName,
                               cluster: configuration.clusterName)
            PeerResponse(mac: mac).encode(into: &out.bytesToSend, version: Self.frameVersion)
            state = .awaitingResponse(peer: peer, version: version)
        case (.awaitingResponse(let peer, let version), .response(let response)):
            let transcript = Self.transcript(prover: role.peer, version: version, proverNonce: peer.nonce,
                                             verifierNonce: nonce, proverHost: peer.hostName,
                                             verifierHost: configuration.hostName, cluster: configuration.clusterName)
            guard HMAC<SHA256>.isValidAuthenticationCode(response.mac, authenticating: transcript,
                                                         using: configuration.clusterKey) else {
                fail(.authenticationFailed, refuse: .authenticationFailed, into: &out)
                return
            }
            PeerWelcome().encode(into: &out.bytesToSend, version: Self.frameVersion)
            state = .awaitingWelcome(peer: peer, version: version)
        case (.awaitingWelcome(let peer, let version), .welcome):
            state = .authenticated
            // Hand over whatever followed the WELCOME, still undecoded.
            out.events.append(.authenticated(peerHost: peer.hostName, version: version,
                                             remaining: decoder.undecodedBytes))
        default:
            fail(.unauthenticatedFrame(frame.header.type), refuse: .protocolViolation, into: &out)
        }
    }

    mutating func receivedHello(_ hello: PeerHello, into out: inout Output) {
        let c = configuration
        guard hello.clusterName == c.clusterName else {
            fail(.clusterMismatch(local: c.clusterName, peer: hello.clusterName), refuse: .clusterMismatch,
                 message: "this is cluster '\(c.clusterName)'", into: &out)
            return
        }
        guard hello.versions.overlaps(c.versions) else {
            fail(.incompatibleVersion(local: c.versions, peer: hello.versions), refuse: .incompatibleVersion,
                 message: "supported versions \(c.versions.lowerBound)...\(c.versions.upperBound)", into: &out)
            return
        }
        guard hello.nonce != nonce, hello.hostName != c.hostName else {
            fail(.reflectedChallenge, refuse: .reflected, into: &out)
            return
        }
        if let expected = c.expectedPeerHost, expected != hello.hostName {
            fail(.unexpectedPeer(expected: expected, found: hello.hostName), refuse: .unexpectedPeer,
                 message: "this host replicates with '\(expected)'", into: &out)
            return
        }
        // Highest version both speak.
        let version = min(hello.versions.upperBound, c.versions.upperBound)
        PeerChallenge(version: version, nonce: nonce).encode(into: &out.bytesToSend, version: Self.frameVersion)
        state = .awaitingChallenge(peer: hello, version: version)
    }

    mutating func fail(_ error: PeerHandshakeError, refuse reason: PeerRefuse.Reason?, message: String? = nil,
                       into out: inout Output) {
        state = .failed
        if let reason {
            PeerRefuse(reason: reason, message: message ?? error.description)
                .encode(into: &out.bytesToSend, version: Self.frameVersion)
        }
        out.events.append(.failed(error))
    }

    static func transcript(prover: Role, version: UInt16, proverNonce: [UInt8], verifierNonce: [UInt8],
                           proverHost: String, verifierHost: String, cluster: String) -> [UInt8] {
        var t = label
        t.append(prover.rawValue)
        t.appendBigEndian(version)
        t.append(contentsOf: proverNonce)
        t.append(contentsOf: verifierNonce)
        t.appendShortText(proverHost)
        t.appendShortText(verifierHost)
        t.appendShortText(cluster)
        return t
    }

    static func mac(key: SymmetricKey, prover: Role, version: UInt16, proverNonce: [UInt8], verifierNonce: [UInt8],
                    proverHost: String, verifierHost: String, cluster: String) -> [UInt8] {
        let t = transcript(prover: prover, version: version, proverNonce: proverNonce, verifierNonce: verifierNonce,
                           proverHost: proverHost, verifierHost: verifierHost, cluster: cluster)
        return Array(HMAC<SHA256>.authenticationCode(for: t, using: key))
    }
}
