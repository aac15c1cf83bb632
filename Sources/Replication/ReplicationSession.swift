import Locking
import Logging
import SystemPackage
import Uring
import Volume

/// The connected state of one volume's peer link: frames go out in submission order through one
/// sender task, acknowledgements resolve tickets, keepalive detects a dead peer.
///
/// It is the volume's ``WriteReplicator`` while connected. When the link fails — an I/O error,
/// a malformed frame, or no frame for the keepalive timeout — every outstanding ticket resolves
/// `false` at once, so the guest's writes complete locally (their ranges dirty) and wait no
/// longer than the timeout.
public final class ReplicationSession: WriteReplicator, Sendable {
    public struct Timing: Sendable {
        public var keepaliveInterval: Duration = .milliseconds(500)
        public var timeout: Duration = .seconds(2)
        public init() {}
    }

    private struct State {
        var nextSequence: UInt64 = 1
        var pending: [UInt64: ReplicationTicket] = [:]
        var outbound: [OutboundFrame] = []
        var senderWaiting: CheckedContinuation<Void, Never>?
        var failure: PeerLinkError?
        var keepalive: PeerKeepalive
        var bytesSent: UInt64 = 0
    }

    public let connection: PeerConnection
    public let volumeID: UInt32
    let timing: Timing
    let logger: Logger
    private let state: Locked<State>

    public init(connection: PeerConnection, volumeID: UInt32 = 1, timing: Timing = Timing(), logger: Logger) {
        self.connection = connection
        self.volumeID = volumeID
        self.timing = timing
        self.logger = logger
        self.state = Locked(
            State(keepalive: PeerKeepalive(interval: timing.keepaliveInterval, timeout: timing.timeout, now: .now)))
    }

    public var failure: PeerLinkError? { state.withLock { $0.failure } }
    public var bytesSent: UInt64 { state.withLock { $0.bytesSent } }

    // MARK: Sending

    /// WriteReplicator: queues a guest change; the ticket resolves with the peer's ACK.
    public func submit(_ change: ReplicatedChange) -> ReplicationTicket? {
        request { sequence in
            switch change {
            case .write(let offset, let data, let fua):
                var prefix: [UInt8] = []
                PeerWrite.encodePrefix(
                    into: &prefix, volumeID: volumeID, sequence: sequence, offset: offset, fua: fua, dataLength: data.count)
                return OutboundFrame(prefix: prefix, data: data)
            case .trim(let offset, let length):
                return OutboundFrame(PeerTrim(volumeID: volumeID, sequence: sequence, offset: offset, length: length).encoded())
            case .writeZeroes(let offset, let length, let allocate):
                return OutboundFrame(
                    PeerWriteZeroes(volumeID: volumeID, sequence: sequence, offset: offset, length: length, noHole: allocate)
                        .encoded())
            case .flush:
                return OutboundFrame(PeerFlush(volumeID: volumeID, sequence: sequence).encoded())
            }
        }
    }

    /// Queues a frame that the peer acknowledges by its sequence number.
    func request(_ encode: (UInt64) -> OutboundFrame) -> ReplicationTicket? {
        let ticket = ReplicationTicket()
        let wake = state.withLock { s -> CheckedContinuation<Void, Never>?? in
            guard s.failure == nil else { return .none }
            let sequence = s.nextSequence
            s.nextSequence += 1
            s.pending[sequence] = ticket
            s.outbound.append(encode(sequence))
            defer { s.senderWaiting = nil }
            return .some(s.senderWaiting)
        }
        guard case .some(let sender) = wake else { return nil }
        sender?.resume()
        return ticket
    }

    /// Queues a frame that needs no acknowledgement.
    func post(_ frame: OutboundFrame) {
        let sender = state.withLock { s -> CheckedContinuation<Void, Never>? in
            guard s.failure == nil else { return nil }
            s.outbound.append(frame)
            defer { s.senderWaiting = nil }
            return s.senderWaiting
        }
        sender?.resume()
    }

    func post(_ encoded: [UInt8]) { post(OutboundFrame(encoded)) }

    /// Small frames queued together go out in one send (ACKs of a busy secondary, mostly).
    private static let coalesceLimit = 256 << 10

    /// The only writer of the socket; runs until the session fails.
    func runSender() async {
        var batch: [OutboundFrame] = []
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.coalesceLimit, alignment: 16)
        defer { scratch.deallocate() }
        while true {
            let (stop, idle) = state.withLock { s -> (Bool, Bool) in
                if s.failure != nil { return (true, false) }
                if s.outbound.isEmpty { return (false, true) }
                swap(&batch, &s.outbound)
                return (false, false)
            }
            if stop { return }
            if idle {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let ready = state.withLock { s -> Bool in
                        if s.failure != nil || !s.outbound.isEmpty { return true }
                        s.senderWaiting = continuation
                        return false
                    }
                    if ready { continuation.resume() }
                }
                continue
            }
            do {
                var index = 0
                while index < batch.count {
                    // Coalesce a run of small frames into one buffer.
                    var used = 0
                    var end = index
                    while end < batch.count, batch[end].bytes.count < 64 << 10, used + batch[end].bytes.count <= Self.coalesceLimit {
                        UnsafeMutableRawBufferPointer(rebasing: scratch[used..<(used + batch[end].bytes.count)])
                            .copyMemory(from: UnsafeRawBufferPointer(batch[end].bytes))
                        used += batch[end].bytes.count
                        end += 1
                    }
                    if end > index {
                        try await connection.send(UnsafeRawBufferPointer(rebasing: scratch[0..<used]))
                        index = end
                    } else {
                        try await connection.send(UnsafeRawBufferPointer(batch[index].bytes))
                        used = batch[index].bytes.count
                        index += 1
                    }
                    state.withLock { $0.bytesSent += UInt64(used) }
                }
            } catch {
                fail(.closedByPeer)
                return
            }
            batch.removeAll(keepingCapacity: true)
        }
    }

    // MARK: Receiving

    /// Call for every frame received: keeps the keepalive fed.
    func frameReceived() {
        state.withLock { $0.keepalive.frameReceived(now: .now) }
    }

    /// Resolves the ticket of an acknowledged request.
    func acknowledge(sequence: UInt64, status: UInt32) {
        let ticket = state.withLock { $0.pending.removeValue(forKey: sequence) }
        if status != 0 && status != PeerAck.checksumMismatch {
            logger.warning("peer failed a replicated request", metadata: ["sequence": "\(sequence)", "errno": "\(status)"])
        }
        ticket?.resolve(status == 0, status: status)
    }

    /// Sends PINGs and declares the peer dead after the timeout; runs until the session fails.
    func runKeepalive() async {
        var token: UInt64 = 0
        while failure == nil {
            let action = state.withLock { $0.keepalive.poll(now: .now) }
            switch action {
            case .sendPing:
                token += 1
                post(PeerPing(token: token).encoded())
            case .peerDead:
                fail(.peerDead)
                return
            default:
                break
            }
            try? await connection.ring.sleep(for: timing.keepaliveInterval / 4)
        }
    }

    /// Ends the session: outstanding tickets resolve false, the socket closes, the sender stops.
    public func fail(_ error: PeerLinkError) {
        let (tickets, sender, first) = state.withLock { s -> ([ReplicationTicket], CheckedContinuation<Void, Never>?, Bool) in
            guard s.failure == nil else { return ([], nil, false) }
            s.failure = error
            let tickets = Array(s.pending.values)
            s.pending.removeAll()
            s.outbound.removeAll()
            defer { s.senderWaiting = nil }
            return (tickets, s.senderWaiting, true)
        }
        guard first else { return }
        logger.warning("peer link down", metadata: ["peer": "\(connection.peerHost)", "reason": "\(error)"])
        connection.close()
        sender?.resume()
        for ticket in tickets { ticket.resolve(false) }
    }
}
