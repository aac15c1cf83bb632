/// Server side of the NBD fixed-newstyle handshake as an I/O-free state machine.
///
/// The caller owns the socket: it sends ``greeting`` on accept, feeds every
/// received chunk (of any size, even one byte) to ``receive(_:)``, writes
/// ``Output/bytesToSend`` in order, and reacts to ``Output/events``:
///
/// - ``Event/exportSelected(_:remaining:)``: negotiation is over; switch to an
///   ``NBDRequestDecoder`` for that export and feed it `remaining` first (bytes
///   the client pipelined after its final option).
/// - ``Event/aborted``: the client sent `NBD_OPT_ABORT`; send the bytes (an ACK)
///   and close.
/// - ``Event/failed(_:)``: protocol violation; send the bytes and close.
/// - ``Event/optionRefused(_:reply:reason:)``: informational, for logging; the
///   error reply is already in `bytesToSend` and negotiation continues.
///
/// Structured replies (`NBD_OPT_STRUCTURED_REPLY`) and the `base:allocation` metadata context
/// (`NBD_OPT_LIST_META_CONTEXT`, `NBD_OPT_SET_META_CONTEXT`) are offered; what the client chose
/// is ``negotiated`` once an export is selected (docs/nbd.md).
public struct NBDServerHandshake: Sendable {
    /// The metadata contexts vmhad serves, by name, with the id SET_META_CONTEXT gives each.
    public static let metaContexts: [(name: String, id: UInt32)] = [("base:allocation", 1)]

    public enum Event: Sendable, Hashable {
        case exportSelected(NBDExport, remaining: [UInt8])
        case aborted
        case failed(NBDProtocolError)
        case optionRefused(NBD.Option, reply: NBD.OptionReplyType, reason: String)
    }

    public struct Output: Sendable, Hashable {
        public var bytesToSend: [UInt8] = []
        public var events: [Event] = []
    }

    enum State: Sendable {
        case awaitingClientFlags
        case awaitingOption
        /// Skipping the data of an over-long option before replying `NBD_REP_ERR_TOO_BIG`.
        case discardingOption(NBD.Option, remaining: UInt64)
        case finished
    }

    /// Largest option payload we buffer. GO/INFO need 4 + name (≤ 4096) + 2 +
    /// 2 per info request; anything larger is refused without buffering it.
    public static let maximumOptionLength: UInt32 = 16 << 10

    /// First bytes the server sends: NBDMAGIC, IHAVEOPT, handshake flags.
    public static let greeting: [UInt8] = {
        var out = [UInt8]()
        out.appendBigEndian(NBD.nbdMagic)
        out.appendBigEndian(NBD.optionMagic)
        out.appendBigEndian(NBD.HandshakeFlags([.fixedNewstyle, .noZeroes]).rawValue)
        return out
    }()

    public let exports: [NBDExport]
    /// Export chosen when the client asks for the empty name ("default export").
    public let defaultExportName: String?
    var state: State = .awaitingClientFlags
    var buffer: [UInt8] = []
    var clientFlags: NBD.ClientFlags = []
    /// Whether negotiation ended by selecting an export.
    var handedOver = false
    /// Structured replies and the selected metadata contexts, for the transmission phase.
    public private(set) var negotiated = NBDNegotiated()

    /// - Parameters:
    ///   - exports: exports this connection may select.
    ///   - defaultExportName: which export the empty name selects; `nil` means
    ///     only an export literally named `""` matches it.
    public init(exports: [NBDExport], defaultExportName: String? = nil) {
        self.exports = exports
        self.defaultExportName = defaultExportName
    }

    /// Whether negotiation has ended (selected, aborted or failed).
    public var isFinished: Bool {
        if case .finished = state { return true }
        return false
    }

    /// Consumes received bytes and returns what to send and what happened.
    public mutating func receive(_ bytes: some Collection<UInt8>) -> Output {
        var out = Output()
        if case .finished = state {
            // After an abort or failure the caller is closing; stray bytes are
            // expected and ignored. After a hand-over they are a caller bug.
            if handedOver && !bytes.isEmpty { out.events.append(.failed(.dataAfterEnd)) }
            return out
        }
        buffer.append(contentsOf: bytes)
        var consumed = 0
        loop: while true {
            let available = buffer.count - consumed
            switch state {
            case .finished:
                break loop
            case .awaitingClientFlags:
                guard available >= 4 else { break loop }
                let raw: UInt32 = buffer.readBigEndian(at: consumed)
                consumed += 4
                let flags = NBD.ClientFlags(rawValue: raw)
                let known: NBD.ClientFlags = [.fixedNewstyle, .noZeroes]
                if !flags.subtracting(known).isEmpty {
                    fail(.unknownClientFlags(raw), &out)
                } else if !flags.contains(.fixedNewstyle) {
                    fail(.clientNotFixedNewstyle, &out)
                } else {
                    clientFlags = flags
                    state = .awaitingOption
                }
            case .discardingOption(let option, let remaining):
                let n = min(UInt64(available), remaining)
                consumed += Int(n)
                if n == remaining {
                    refuse(option, .errTooBig, "option data exceeds \(Self.maximumOptionLength) bytes", &out)
                    state = .awaitingOption
                } else {
                    state = .discardingOption(option, remaining: remaining - n)
                    break loop
                }
            case .awaitingOption:
                guard available >= 16 else { break loop }
                let magic: UInt64 = buffer.readBigEndian(at: consumed)
                guard magic == NBD.optionMagic else {
                    fail(.badOptionMagic(magic), &out)
                    break loop
                }
                let option = NBD.Option(rawValue: buffer.readBigEndian(at: consumed + 8))
                let length: UInt32 = buffer.readBigEndian(at: consumed + 12)
                if length > Self.maximumOptionLength {
                    if option == .exportName {
                        // No error reply exists for EXPORT_NAME; and a name cannot be this long.
                        fail(.exportNameTooLong(length), &out)
                        break loop
                    }
                    consumed += 16
                    state = .discardingOption(option, remaining: UInt64(length))
                    continue loop
                }
                guard available >= 16 + Int(length) else { break loop }
                let data = Array(buffer[(consumed + 16)..<(consumed + 16 + Int(length))])
                consumed += 16 + Int(length)
                handle(option, data, &out)
                if case .finished = state, case .exportSelected(let export, _)? = out.events.last {
                    out.events[out.events.count - 1] = .exportSelected(
                        export, remaining: Array(buffer[consumed...]))
                    consumed = buffer.count
                }
            }
        }
        buffer.removeFirst(consumed)
        if case .finished = state { buffer = [] }
        return out
    }

    // MARK: - Options

    mutating func handle(_ option: NBD.Option, _ data: [UInt8], _ out: inout Output) {
        switch option {
        case .exportName:
            guard let name = String(validating: data, as: UTF8.self), let export = lookup(name) else {
                fail(.unknownExport(String(decoding: data, as: UTF8.self)), &out)
                return
            }
            out.bytesToSend.appendBigEndian(export.size)
            out.bytesToSend.appendBigEndian(export.flags.rawValue)
            if !clientFlags.contains(.noZeroes) {
                out.bytesToSend.append(contentsOf: repeatElement(0, count: 124))
            }
            state = .finished
            handedOver = true
            out.events.append(.exportSelected(export, remaining: []))

        case .abort:
            // The spec asks for an ACK; the client may already have closed.
            appendReply(option, .ack, [], &out)
            state = .finished
            out.events.append(.aborted)

        case .list:
            guard data.isEmpty else {
                refuse(option, .errInvalid, "NBD_OPT_LIST carries no data", &out)
                return
            }
            for export in exports {
                var item = [UInt8]()
                item.appendBigEndian(UInt32(export.name.utf8.count))
                item.append(contentsOf: export.name.utf8)
                if let d = export.description { item.append(contentsOf: d.utf8) }
                appendReply(option, .server, item, &out)
            }
            appendReply(option, .ack, [], &out)

        case .info, .go:
            handleInfoOrGo(option, data, &out)

        case .structuredReply:
            guard data.isEmpty else {
                refuse(option, .errInvalid, "NBD_OPT_STRUCTURED_REPLY carries no data", &out)
                return
            }
            negotiated.structuredReplies = true
            appendReply(option, .ack, [], &out)

        case .listMetaContext, .setMetaContext:
            handleMetaContext(option, data, &out)

        default:
            refuse(option, .errUnsupported, "\(option) is not supported", &out)
        }
    }

    mutating func handleInfoOrGo(_ option: NBD.Option, _ data: [UInt8], _ out: inout Output) {
        guard data.count >= 6 else {
            refuse(option, .errInvalid, "\(option) data is \(data.count) bytes, need at least 6", &out)
            return
        }
        let nameLength = Int(data.readBigEndian(at: 0, as: UInt32.self))
        guard nameLength <= data.count - 6 else {
            refuse(option, .errInvalid, "\(option) name length \(nameLength) exceeds option data", &out)
            return
        }
        let infoCount = Int(data.readBigEndian(at: 4 + nameLength, as: UInt16.self))
        guard data.count == 6 + nameLength + 2 * infoCount else {
            refuse(option, .errInvalid, "\(option) length \(data.count) does not match name length \(nameLength) and \(infoCount) info requests", &out)
            return
        }
        guard let name = String(validating: data[4..<(4 + nameLength)], as: UTF8.self) else {
            refuse(option, .errInvalid, "\(option) export name is not UTF-8", &out)
            return
        }
        var requested = Set<NBD.InfoType>()
        for i in 0..<infoCount {
            requested.insert(NBD.InfoType(rawValue: data.readBigEndian(at: 6 + nameLength + 2 * i)))
        }
        guard let export = lookup(name) else {
            refuse(option, .errUnknown, "unknown export '\(name)'", &out)
            return
        }
        var info = [UInt8]()
        info.appendBigEndian(NBD.InfoType.export.rawValue)
        info.appendBigEndian(export.size)
        info.appendBigEndian(export.flags.rawValue)
        appendReply(option, .info, info, &out)
        if requested.contains(.name) {
            info = []
            info.appendBigEndian(NBD.InfoType.name.rawValue)
            info.append(contentsOf: export.name.utf8)
            appendReply(option, .info, info, &out)
        }
        if requested.contains(.description), let d = export.description {
            info = []
            info.appendBigEndian(NBD.InfoType.description.rawValue)
            info.append(contentsOf: d.utf8)
            appendReply(option, .info, info, &out)
        }
        // Sent even when not requested (the spec permits it): our minimum
        // alignment is enforced in transmission, so clients should know it.
        info = []
        info.appendBigEndian(NBD.InfoType.blockSize.rawValue)
        info.appendBigEndian(export.blockSizes.minimum)
        info.appendBigEndian(export.blockSizes.preferred)
        info.appendBigEndian(export.blockSizes.maximum)
        appendReply(option, .info, info, &out)
        appendReply(option, .ack, [], &out)
        if option == .go {
            state = .finished
            handedOver = true
            out.events.append(.exportSelected(export, remaining: []))
        }
    }

    /// LIST answers what the queries match (ids 0, as the spec asks); SET replaces the selection
    /// with what they match. Queries: `base:` or `base:allocation`; anything else matches nothing.
    mutating func handleMetaContext(_ option: NBD.Option, _ data: [UInt8], _ out: inout Output) {
        guard negotiated.structuredReplies else {
            refuse(option, .errInvalid, "\(option) before NBD_OPT_STRUCTURED_REPLY", &out)
            return
        }
        guard data.count >= 8 else {
            refuse(option, .errInvalid, "\(option) data is \(data.count) bytes, need at least 8", &out)
            return
        }
        let nameLength = Int(data.readBigEndian(at: 0, as: UInt32.self))
        guard nameLength <= data.count - 8 else {
            refuse(option, .errInvalid, "\(option) export name length \(nameLength) exceeds option data", &out)
            return
        }
        guard let name = String(validating: data[4..<(4 + nameLength)], as: UTF8.self), lookup(name) != nil else {
            refuse(option, .errUnknown, "unknown export '\(String(decoding: data[4..<(4 + nameLength)], as: UTF8.self))'", &out)
            return
        }
        let count = Int(data.readBigEndian(at: 4 + nameLength, as: UInt32.self))
        var queries: [String] = []
        var at = 8 + nameLength
        for _ in 0..<min(count, 1024) {
            guard at + 4 <= data.count else { break }
            let length = Int(data.readBigEndian(at: at, as: UInt32.self))
            guard length <= data.count - at - 4, let query = String(validating: data[(at + 4)..<(at + 4 + length)], as: UTF8.self) else { break }
            queries.append(query)
            at += 4 + length
        }
        guard queries.count == count, at == data.count else {
            refuse(option, .errInvalid, "\(option) queries do not match their count \(count) and the option's length", &out)
            return
        }
        var matched: [(name: String, id: UInt32)] = []
        let everything = option == .listMetaContext && queries.isEmpty
        for context in Self.metaContexts where everything || queries.contains(where: { Self.query($0, matches: context.name) }) {
            matched.append(context)
        }
        if option == .setMetaContext { negotiated.metaContexts = matched }
        for context in matched {
            var item = [UInt8]()
            item.appendBigEndian(option == .setMetaContext ? context.id : 0)
            item.append(contentsOf: context.name.utf8)
            appendReply(option, .metaContext, item, &out)
        }
        appendReply(option, .ack, [], &out)
    }

    /// A query names a context, or (`base:`) every context of its namespace.
    static func query(_ query: String, matches name: String) -> Bool {
        query == name || (query.hasSuffix(":") && name.hasPrefix(query))
    }

    func lookup(_ name: String) -> NBDExport? {
        if let e = exports.first(where: { $0.name == name }) { return e }
        if name.isEmpty, let d = defaultExportName { return exports.first { $0.name == d } }
        return nil
    }

    // MARK: - Encoding

    func appendReply(_ option: NBD.Option, _ type: NBD.OptionReplyType, _ data: [UInt8], _ out: inout Output) {
        out.bytesToSend.appendBigEndian(NBD.optionReplyMagic)
        out.bytesToSend.appendBigEndian(option.rawValue)
        out.bytesToSend.appendBigEndian(type.rawValue)
        out.bytesToSend.appendBigEndian(UInt32(data.count))
        out.bytesToSend.append(contentsOf: data)
    }

    /// Error reply (with a human-readable message, which the spec allows) plus a log event.
    func refuse(_ option: NBD.Option, _ type: NBD.OptionReplyType, _ reason: String, _ out: inout Output) {
        appendReply(option, type, Array(reason.utf8), &out)
        out.events.append(.optionRefused(option, reply: type, reason: reason))
    }

    mutating func fail(_ error: NBDProtocolError, _ out: inout Output) {
        state = .finished
        out.events.append(.failed(error))
    }
}

/// What a client negotiated for the transmission phase.
public struct NBDNegotiated: Sendable, Hashable {
    public var structuredReplies = false
    /// SET_META_CONTEXT's selection: names and the ids BLOCK_STATUS replies carry.
    public var metaContexts: [(name: String, id: UInt32)] = []

    public init(structuredReplies: Bool = false, metaContexts: [(name: String, id: UInt32)] = []) {
        self.structuredReplies = structuredReplies
        self.metaContexts = metaContexts
    }

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.structuredReplies == rhs.structuredReplies && lhs.metaContexts.map(\.name) == rhs.metaContexts.map(\.name)
            && lhs.metaContexts.map(\.id) == rhs.metaContexts.map(\.id)
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(structuredReplies)
        for context in metaContexts { hasher.combine(context.name); hasher.combine(context.id) }
    }
}
