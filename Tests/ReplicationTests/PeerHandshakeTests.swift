import Crypto
import Testing
@testable import Replication

var clusterKey: SymmetricKey { SymmetricKey(data: Array("0123456789abcdef0123456789abcdef".utf8)) }

func config(_ host: String, cluster: String = "prod", key: SymmetricKey = clusterKey,
            versions: ClosedRange<UInt16> = 1...1, expectedPeer: String? = nil) -> PeerHandshake.Configuration {
    PeerHandshake.Configuration(hostName: host, clusterName: cluster, clusterKey: key, versions: versions,
                                expectedPeerHost: expectedPeer)
}

/// Two handshakes wired back to back, delivering bytes in `chunk`-sized pieces.
struct Link {
    var a: PeerHandshake
    var b: PeerHandshake
    var eventsA: [PeerHandshake.Event] = []
    var eventsB: [PeerHandshake.Event] = []
    var toA: [UInt8] = []
    var toB: [UInt8] = []

    init(_ a: PeerHandshake, _ b: PeerHandshake) {
        self.a = a
        self.b = b
        toB = self.a.start().bytesToSend
        toA = self.b.start().bytesToSend
    }

    mutating func run(chunk: Int = .max) {
        while !toA.isEmpty || !toB.isEmpty {
            if !toA.isEmpty {
                let n = min(chunk, toA.count)
                let out = a.receive(toA.prefix(n))
                toA.removeFirst(n)
                toB += out.bytesToSend
                eventsA += out.events
            }
            if !toB.isEmpty {
                let n = min(chunk, toB.count)
                let out = b.receive(toB.prefix(n))
                toB.removeFirst(n)
                toA += out.bytesToSend
                eventsB += out.events
            }
        }
    }
}

@Suite struct PeerHandshakeTests {
    @Test(arguments: [1, 7, 64, Int.max])
    func bothSidesAuthenticate(chunk: Int) {
        var link = Link(PeerHandshake(role: .connector, configuration: config("node-a")),
                        PeerHandshake(role: .acceptor, configuration: config("node-b")))
        link.run(chunk: chunk)
        #expect(link.eventsA == [.authenticated(peerHost: "node-b", version: 1, remaining: [])])
        #expect(link.eventsB == [.authenticated(peerHost: "node-a", version: 1, remaining: [])])
        #expect(link.a.isFinished && link.b.isFinished)
    }

    @Test func negotiatesHighestCommonVersion() {
        var link = Link(PeerHandshake(role: .connector, configuration: config("a", versions: 1...1)),
                        PeerHandshake(role: .acceptor, configuration: config("b", versions: 1...4)))
        link.run()
        #expect(link.eventsA == [.authenticated(peerHost: "b", version: 1, remaining: [])])
    }

    @Test func framesPipelinedAfterWelcomeAreHandedOver() {
        var a = PeerHandshake(role: .connector, configuration: config("a"))
        var b = PeerHandshake(role: .acceptor, configuration: config("b"))
        var toB = a.start().bytesToSend
        var toA = b.start().bytesToSend
        toB += a.receive(toA).bytesToSend  // a: CHALLENGE
        toA = b.receive(toB).bytesToSend   // b: CHALLENGE, RESPONSE
        toB = a.receive(toA).bytesToSend   // a: RESPONSE, WELCOME(for b)
        let outB = b.receive(toB)          // b: WELCOME, authenticated
        #expect(outB.events.count == 1)
        // b may now send data immediately behind its WELCOME.
        let ping = PeerPing(token: 5).encoded()
        let outA = a.receive(outB.bytesToSend + ping)
        #expect(outA.events == [.authenticated(peerHost: "b", version: 1, remaining: ping)])
    }

    @Test func wrongKeyIsRefused() {
        var link = Link(PeerHandshake(role: .connector, configuration: config("a")),
                        PeerHandshake(role: .acceptor, configuration: config("b", key: SymmetricKey(data: Array(repeating: 1, count: 32)))))
        link.run()
        #expect(link.eventsA.contains(.failed(.authenticationFailed)) || link.eventsB.contains(.failed(.authenticationFailed)))
        #expect(!link.eventsA.contains { if case .authenticated = $0 { true } else { false } })
        #expect(!link.eventsB.contains { if case .authenticated = $0 { true } else { false } })
    }

    @Test func versionMismatchIsRefusedWithReason() {
        var link = Link(PeerHandshake(role: .connector, configuration: config("a", versions: 1...1)),
                        PeerHandshake(role: .acceptor, configuration: config("b", versions: 2...3)))
        link.run()
        #expect(link.eventsA.first == .failed(.incompatibleVersion(local: 1...1, peer: 2...3)))
        #expect(link.eventsB.first == .failed(.incompatibleVersion(local: 2...3, peer: 1...1)))
    }

    @Test func refuseCarriesReasonToThePeer() throws {
        var a = PeerHandshake(role: .connector, configuration: config("a", cluster: "prod"))
        var b = PeerHandshake(role: .acceptor, configuration: config("b", cluster: "test"))
        _ = b.start()
        let out = b.receive(a.start().bytesToSend)
        #expect(out.events == [.failed(.clusterMismatch(local: "test", peer: "prod"))])
        var decoder = PeerFrameDecoder()
        decoder.receive(out.bytesToSend)
        let frame = try #require(try decoder.next())
        guard case .refuse(let refuse) = try PeerMessage(frame: frame) else { Issue.record("no REFUSE"); return }
        #expect(refuse.reason == .clusterMismatch)
        // And a receiving the REFUSE fails with the peer's reason.
        let events = a.receive(out.bytesToSend).events
        #expect(events.count == 1)
        guard case .failed(.refusedByPeer(.clusterMismatch, _)) = events[0] else {
            Issue.record("unexpected \(events)")
            return
        }
    }

    @Test func unexpectedPeerHostIsRefused() {
        var link = Link(PeerHandshake(role: .connector, configuration: config("a", expectedPeer: "b")),
                        PeerHandshake(role: .acceptor, configuration: config("mallory")))
        link.run()
        #expect(link.eventsA.first == .failed(.unexpectedPeer(expected: "b", found: "mallory")))
    }

    @Test func dataFrameBeforeAuthenticationFails() {
        var a = PeerHandshake(role: .acceptor, configuration: config("a"))
        _ = a.start()
        let out = a.receive(PeerWrite(volumeID: 1, sequence: 1, offset: 0, data: [1]).encoded())
        #expect(out.events == [.failed(.unauthenticatedFrame(.write))])
        #expect(!out.bytesToSend.isEmpty)  // the REFUSE
    }

    @Test func welcomeBeforeResponseVerificationFails() {
        var a = PeerHandshake(role: .acceptor, configuration: config("a"))
        _ = a.start()
        let hello = PeerHello(versions: 1...1, nonce: Array(repeating: 3, count: 32), hostName: "m", clusterName: "prod")
        let out = a.receive(hello.encoded() + PeerWelcome().encoded())
        #expect(out.events == [.failed(.unauthenticatedFrame(.welcome))])
    }

    /// The peer (without the key) echoes our own nonce back as its challenge.
    @Test func reflectedNonceIsRefused() {
        let nonce = Array(repeating: UInt8(0x42), count: 32)
        var a = PeerHandshake(role: .connector, configuration: config("a"), nonce: nonce)
        _ = a.start()
        let out = a.receive(PeerHello(versions: 1...1, nonce: nonce, hostName: "b", clusterName: "prod").encoded())
        #expect(out.events == [.failed(.reflectedChallenge)])
    }

    /// The peer replays our own RESPONSE (it cannot compute its own): the role
    /// and nonce order in the MAC make that fail.
    @Test func echoedResponseFailsAuthentication() {
        var a = PeerHandshake(role: .connector, configuration: config("a"))
        var toPeer = a.start().bytesToSend
        let peerNonce = Array(repeating: UInt8(0x77), count: 32)
        toPeer += a.receive(PeerHello(versions: 1...1, nonce: peerNonce, hostName: "b", clusterName: "prod").encoded()).bytesToSend
        let afterChallenge = a.receive(PeerChallenge(version: 1, nonce: peerNonce).encoded())
        // a's RESPONSE is the last frame it sent; send it straight back.
        let response = Array(afterChallenge.bytesToSend.suffix(PeerProtocol.headerSize + 32))
        let out = a.receive(response)
        #expect(out.events == [.failed(.authenticationFailed)])
    }

    /// Reflection across two connections to the same node: the attacker relays
    /// node a's acceptor RESPONSE to node a's connector. It fails because the
    /// MAC binds the prover's host name, and a refuses a peer claiming a's name.
    @Test func crossConnectionReflectionFails() throws {
        var connector = PeerHandshake(role: .connector, configuration: config("a"))
        var acceptor = PeerHandshake(role: .acceptor, configuration: config("a"))
        let helloA1 = try decodeMessages(connector.start().bytesToSend)
        _ = acceptor.start()
        guard case .hello(let h1) = helloA1[0] else { Issue.record("no HELLO"); return }
        // Attacker → a's acceptor, claiming to be "b" and using a's connector nonce.
        let accChallenge = try decodeMessages(
            acceptor.receive(PeerHello(versions: 1...1, nonce: h1.nonce, hostName: "b", clusterName: "prod").encoded()).bytesToSend)
        guard case .challenge(let c) = accChallenge.first else { Issue.record("no CHALLENGE: \(accChallenge)"); return }
        let acceptorNonce = c.nonce
        let accOut = try decodeMessages(acceptor.receive(PeerChallenge(version: 1, nonce: h1.nonce).encoded()).bytesToSend)
        guard case .response(let stolen) = accOut.last else { Issue.record("no RESPONSE: \(accOut)"); return }
        // Attacker → a's connector as "b" with the acceptor's nonce and the stolen MAC.
        var stream = PeerHello(versions: 1...1, nonce: acceptorNonce, hostName: "b", clusterName: "prod").encoded()
        stream += PeerChallenge(version: 1, nonce: acceptorNonce).encoded()
        stream += stolen.encoded()
        let out = connector.receive(stream)
        #expect(out.events == [.failed(.authenticationFailed)])
        // Claiming a's own name to make the host names match is refused up front.
        var connector2 = PeerHandshake(role: .connector, configuration: config("a"))
        _ = connector2.start()
        let out2 = connector2.receive(PeerHello(versions: 1...1, nonce: acceptorNonce, hostName: "a", clusterName: "prod").encoded())
        #expect(out2.events == [.failed(.reflectedChallenge)])
    }

    @Test func garbageFailsWithProtocolErrorAndLaterBytesAreIgnored() {
        var a = PeerHandshake(role: .acceptor, configuration: config("a"))
        _ = a.start()
        let out = a.receive(Array(repeating: UInt8(0xEE), count: 40))
        #expect(out.events == [.failed(.protocolError(.badMagic(0xEEEE_EEEE)))])
        #expect(a.receive([1, 2, 3]) == PeerHandshake.Output())
    }
}

func decodeMessages(_ bytes: [UInt8]) throws -> [PeerMessage] {
    var decoder = PeerFrameDecoder()
    decoder.receive(bytes)
    var out: [PeerMessage] = []
    while let frame = try decoder.next() { out.append(try PeerMessage(frame: frame)) }
    return out
}
