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
    public mutating func makeRequest(at now: MonotonicInstant) -> LeaseRequest {
        let id = nextRequestID
        nextRequestID += 1
        outstanding[id] = now
        // An answer older than a whole holder lease can grant nothing usable: forget it.
        let horizon = now - timing.holderLeaseDuration
        outstanding = outstanding.filter { $0.value > horizon }
        return LeaseRequest(host: host, requestID: id)
    }

    /// What an answer changed.
    public enum Outcome: Sendable, Equatable {
        case granted(term: UInt64, validUntil: MonotonicInstant)
        case denied(holder: String?, retryAfter: Duration)
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
            return .denied(holder: holder, retryAfter: retryAfter)
        case .granted(let grantedTerm, let duration):
            if let term, grantedTerm < term { return .ignored }
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
            return .granted(term: grantedTerm, validUntil: validUntil ?? end)
        }
    }

    /// When primary I/O must begin suspending if no renewal arrives before.
    public var suspendDeadline: MonotonicInstant? { validUntil.map { $0 - timing.suspendLatency } }

    /// Whether this host may start or continue primary I/O on the vote's strength at `now`.
    public func mayRunPrimary(at now: MonotonicInstant) -> Bool {
        guard let deadline = suspendDeadline else { return false }
        return now < deadline
    }

    /// Whether the window has not ended yet at `now` (I/O possibly still draining).
    public func holdsLease(at now: MonotonicInstant) -> Bool {
        guard let validUntil else { return false }
        return now < validUntil
    }
}
