/// The witness's side of the lease: at most one host holds the vote at a time.
///
/// A grant lasts `leaseDuration` on the witness's clock from the moment the witness *received* the
/// request. The holder may renew at any time (same term, expiry pushed out). Another host gets the
/// vote only after the grant has expired plus `witnessSafetyMargin`; it then starts a new term, so
/// every grant is identified by (term, holder) and a stale holder can be recognised anywhere.
///
/// The witness also remembers which host may have written without its peer (DRBD's fence-peer
/// "outdate", kept where both hosts can reach it): every grant to a host that does not report its
/// peer in sync makes that host the *unsynced writer*, and no other host gets the vote until the
/// writer reports its peer in sync again — not even after the writer's lease ran out, because its
/// answered writes are on its disk only. Persist it with the term (`unsyncedWriter`).
public struct WitnessLease: Sendable {
    public struct Grant: Sendable, Equatable {
        public var holder: String
        public var term: UInt64
        /// On the witness's clock.
        public var expiresAt: MonotonicInstant
    }

    public let timing: LeaseTiming
    public private(set) var grant: Grant?
    public private(set) var lastTerm: UInt64
    /// The host that held the vote without its peer in sync; the other host's copy is outdated.
    public private(set) var unsyncedWriter: String?
    /// A freshly (re)started witness has forgotten any grant it made before; it stays silent for one
    /// lease plus margin so a grant it no longer remembers has surely run out.
    private let quietUntil: MonotonicInstant

    /// - Parameters:
    ///   - startedAt: witness clock at start.
    ///   - lastTerm: the highest term persisted before a restart (0 for a new witness); terms never repeat.
    ///   - unsyncedWriter: persisted with the term.
    public init(timing: LeaseTiming, startedAt: MonotonicInstant, lastTerm: UInt64 = 0, unsyncedWriter: String? = nil) {
        self.timing = timing
        self.lastTerm = lastTerm
        self.unsyncedWriter = unsyncedWriter
        self.quietUntil = startedAt + timing.leaseDuration + timing.witnessSafetyMargin
    }

    /// Answers a request that arrived at `now` (witness clock).
    public mutating func handle(_ request: LeaseRequest, at now: MonotonicInstant) -> LeaseResponse {
        LeaseResponse(requestID: request.requestID, host: request.host, decision: decide(for: request, at: now))
    }

    private mutating func decide(for request: LeaseRequest, at now: MonotonicInstant) -> LeaseResponse.Decision {
        let host = request.host
        if now < quietUntil {
            return .denied(holder: nil, retryAfter: quietUntil - now)
        }
        if let writer = unsyncedWriter, writer != host {
            return .outdated(writer: writer)
        }
        // Recorded with the grant, before the answer leaves: a grant that lets the holder write
        // alone always finds the peer outdated here first.
        func recordWriter() -> Bool {
            unsyncedWriter = request.peerInSync ? nil : host
            return unsyncedWriter != nil
        }
        if var current = grant {
            if current.holder == host {
                // Renewal: allowed even after expiry as long as nobody else took over, because the
                // holder's own (conservative) window never outlives what we grant now.
                current.expiresAt = max(current.expiresAt, now + timing.leaseDuration)
                grant = current
                return .granted(term: current.term, duration: timing.leaseDuration, peerOutdated: recordWriter())
            }
            let freeAt = current.expiresAt + timing.witnessSafetyMargin
            if now < freeAt {
                return .denied(holder: current.holder, retryAfter: freeAt - now)
            }
        }
        lastTerm += 1
        grant = Grant(holder: host, term: lastTerm, expiresAt: now + timing.leaseDuration)
        return .granted(term: lastTerm, duration: timing.leaseDuration, peerOutdated: recordWriter())
    }

    /// The holder gives the vote back (e.g. clean shutdown) *after* it stopped all primary I/O, so the
    /// peer can take over without waiting for expiry. A release by anyone else is ignored.
    public mutating func release(by host: String, term: UInt64) {
        if let current = grant, current.holder == host, current.term == term {
            grant = nil
        }
    }

    /// The current holder, if its grant has not expired at `now`.
    public func holder(at now: MonotonicInstant) -> Grant? {
        guard let grant, now < grant.expiresAt else { return nil }
        return grant
    }
}

/// A host asks the witness for (or to renew) the vote.
public struct LeaseRequest: Sendable, Equatable {
    public var host: String
    /// Unique per host incarnation; lets the host match the answer to its own send time.
    public var requestID: UInt64
    /// Every VM the host holds is in sync with its peer, and none runs or is about to run alone
    /// (`HostSnapshot.peerHasOurWrites`). False: the peer's copy may be outdated once we write.
    public var peerInSync: Bool

    public init(host: String, requestID: UInt64, peerInSync: Bool = false) {
        self.host = host
        self.requestID = requestID
        self.peerInSync = peerInSync
    }
}

/// The witness's answer.
public struct LeaseResponse: Sendable, Equatable {
    public enum Decision: Sendable, Equatable {
        /// `peerOutdated`: the witness now holds the requester's peer outdated, so the requester
        /// may answer writes its peer misses (and take the peer's VMs over).
        case granted(term: UInt64, duration: Duration, peerOutdated: Bool)
        /// `holder` is nil while the witness is in its start-up quiet period.
        case denied(holder: String?, retryAfter: Duration)
        /// `writer` held the vote and may have written without the requester: the requester's copy
        /// is outdated, and it gets no vote until `writer` reports it in sync again.
        case outdated(writer: String)
    }

    public var requestID: UInt64
    public var host: String
    public var decision: Decision

    public init(requestID: UInt64, host: String, decision: Decision) {
        self.requestID = requestID
        self.host = host
        self.decision = decision
    }
}
