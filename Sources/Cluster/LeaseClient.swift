/// The host's side of the witness lease: when may this host run primary I/O on the vote's strength?
///
/// The window of a grant runs from the moment the answer *arrives* to the request's *send* time plus
/// `holderLeaseDuration` (all on this host's clock). Counting from the send time is what makes the
/// window end no later than the witness's grant, whatever the message delays; starting at arrival
/// is what makes it begin no earlier than the grant. I/O must be suspended `suspendLatency` before the
/// window ends: `suspendDeadline`.
public struct LeaseClient: Sendable {
    public let host: String
    public let timing: LeaseTiming
    /// The term of the grant we hold (or held last).
    public private(set) var term: UInt64?
    /// End of the window on this host's clock: no primary I/O may happen at or after it.
    public private(set) var validUntil: MonotonicInstant?
    /// Whether the witness, at its latest answer, held our peer outdated: only then may writes the
    /// peer misses be answered, because only then can the peer not be given the vote over them.
    /// Nil until an answer told (a denial by a holder or an `outdated` answer means it does not).
    public private(set) var peerOutdated: Bool?
    private var peerOutdatedAnswerSentAt: MonotonicInstant?
    private var nextRequestID: UInt64
    /// Send times of requests still worth answering; older ones cannot extend anything.
    private var outstanding: [UInt64: MonotonicInstant] = [:]

    /// - Parameter firstRequestID: make it unique per incarnation (e.g. incarnation << 32) so a late
    ///   answer to a previous incarnation's request is never taken for a current one.
    public init(host: String, timing: LeaseTiming, firstRequestID: UInt64 = 1) {
        self.host = host
        self.timing = timing
        self.nextRequestID = firstRequestID
    }

    /// A request to send now; remember `now` as its send time.
    /// - Parameter peerInSync: `HostSnapshot.peerHasOurWrites`.
    public mutating func makeRequest(at now: MonotonicInstant, peerInSync: Bool = false) -> LeaseRequest {
        let id = nextRequestID
        nextRequestID += 1
        outstanding[id] = now
        // Reporting the peer in sync may clear the witness's record at once, before any answer
        // (which may be lost): from now on we must not count on it, nor on older answers.
        if peerInSync { recordPeerOutdated(false, sentAt: now) }
        // An answer older than a whole holder lease can grant nothing usable: forget it.
        let horizon = now - timing.holderLeaseDuration
        outstanding = outstanding.filter { $0.value > horizon }
        return LeaseRequest(host: host, requestID: id, peerInSync: peerInSync)
    }

    /// What an answer changed.
    public enum Outcome: Sendable, Equatable {
        case granted(term: UInt64, validUntil: MonotonicInstant, peerOutdated: Bool)
        case denied(holder: String?, retryAfter: Duration)
        /// `writer` may have written without us: our copy is outdated (no vote until it resyncs us).
        case outdated(writer: String)
        /// Not an answer to an outstanding request of ours (duplicate, replay, too late, other host).
        case ignored
    }

    public mutating func receive(_ response: LeaseResponse, at now: MonotonicInstant) -> Outcome {
        guard response.host == host, let sentAt = outstanding.removeValue(forKey: response.requestID) else {
            return .ignored
        }
        switch response.decision {
        case .denied(let holder, let retryAfter):
            // A denial does not shorten a window we already hold: that window is still inside a
            // grant the witness made; the witness only denies us once that grant has run out.
            // Another holder's grant, or a quiet witness (no holder): only the first says anything
            // of its record (it names us the unsynced writer only while it grants us).
            if holder != nil { recordPeerOutdated(false, sentAt: sentAt) }
            return .denied(holder: holder, retryAfter: retryAfter)
        case .outdated(let writer):
            recordPeerOutdated(false, sentAt: sentAt)
            return .outdated(writer: writer)
        case .granted(let grantedTerm, let duration, let outdated):
            if let term, grantedTerm < term { return .ignored }
            recordPeerOutdated(outdated, sentAt: sentAt)
            let conservative = LeaseTiming(
                leaseDuration: min(duration, timing.leaseDuration), maxDriftPPM: timing.maxDriftPPM,
                suspendLatency: timing.suspendLatency, renewInterval: timing.renewInterval)
            let end = sentAt + conservative.holderLeaseDuration
            if term != grantedTerm {
                // A new term starts now (arrival), never earlier: the window of an older grant is over.
                term = grantedTerm
                validUntil = end
            } else {
                validUntil = max(validUntil ?? end, end)
            }
            return .granted(term: grantedTerm, validUntil: validUntil ?? end, peerOutdated: outdated)
        }
    }

    /// The witness's record as of the latest request it answered (answers may arrive reordered).
    private mutating func recordPeerOutdated(_ value: Bool, sentAt: MonotonicInstant) {
        guard peerOutdatedAnswerSentAt.map({ sentAt >= $0 }) ?? true else { return }
        peerOutdated = value
        peerOutdatedAnswerSentAt = sentAt
    }

    /// When primary I/O must begin suspending if no renewal arrives before.
    public var suspendDeadline: MonotonicInstant? { validUntil.map { $0 - timing.suspendLatency } }

    /// Whether this host may start or continue primary I/O on the vote's strength at `now`.
    public func mayRunPrimary(at now: MonotonicInstant) -> Bool {
        guard let deadline = suspendDeadline else { return false }
        return now < deadline
    }

    /// Whether this host may answer writes its peer misses (run alone, take the peer's VMs over):
    /// the vote, and the witness holding the peer outdated.
    public func mayRunAlone(at now: MonotonicInstant) -> Bool { mayRunPrimary(at: now) && peerOutdated == true }

    /// Whether the window has not ended yet at `now` (I/O possibly still draining).
    public func holdsLease(at now: MonotonicInstant) -> Bool {
        guard let validUntil else { return false }
        return now < validUntil
    }
}
