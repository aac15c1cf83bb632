import Testing
@testable import Volume

@Suite struct NBDRequestDecoderTests {
    static let size: UInt64 = 64 << 20

    func decoder(flags: NBD.TransmissionFlags = NBDExport.defaultFlags) throws -> NBDRequestDecoder {
        NBDRequestDecoder(export: try NBDExport(name: "d", size: Self.size, flags: flags))
    }

    /// Feeds everything, drains all actions; returns actions and the error if one was thrown.
    func run(_ d: inout NBDRequestDecoder, _ bytes: [UInt8], bytewise: Bool = false) -> ([NBDRequestDecoder.Action], NBDProtocolError?) {
        var actions = [NBDRequestDecoder.Action]()
        do {
            if bytewise {
                for b in bytes {
                    d.receive([b])
                    while let a = try d.next() { actions.append(a) }
                }
            } else {
                d.receive(bytes)
                while let a = try d.next() { actions.append(a) }
            }
        } catch {
            return (actions, error)
        }
        return (actions, nil)
    }

    func req(_ c: NBD.Command, _ flags: NBD.CommandFlags = [], cookie: UInt64 = 1, offset: UInt64 = 0,
             length: UInt32 = 4096, payload: [UInt8]? = nil) -> NBDRequest {
        NBDRequest(command: c, flags: flags, cookie: cookie, offset: offset, length: length,
                   payload: payload ?? (c == .write ? [UInt8](repeating: 0xAB, count: Int(length)) : []))
    }

    func rejection(_ a: NBDRequestDecoder.Action?) -> NBD.ErrorCode? {
        if case .reject(_, let e, _)? = a { return e }
        return nil
    }

    @Test(arguments: [false, true])
    func validRequestsDecodeUnderAnyFragmentation(bytewise: Bool) throws {
        var d = try decoder()
        let requests = [
            req(.read, cookie: 1, offset: 4096, length: 8192),
            req(.write, .fua, cookie: 2, offset: 512, length: 1536),
            req(.flush, cookie: 3, length: 0),
            req(.trim, cookie: 4, offset: 1 << 20, length: 1 << 20),
            req(.writeZeroes, [.noHole, .fastZero, .fua], cookie: 5, offset: 0, length: 64 << 10),
            req(.write, cookie: 6, offset: Self.size - 4096, length: 4096),
        ]
        let (actions, error) = run(&d, requests.flatMap { $0.encoded() }, bytewise: bytewise)
        #expect(error == nil)
        #expect(actions == requests.map { .request($0) })
        #expect(d.bufferedByteCount == 0)
    }

    @Test func partialWritePayloadWaits() throws {
        var d = try decoder()
        let w = req(.write, cookie: 9, length: 4096).encoded()
        d.receive(w.prefix(28 + 100))
        #expect(try d.next() == nil)
        d.receive(w.dropFirst(128))
        #expect(try d.next() == .request(req(.write, cookie: 9, length: 4096)))
    }

    @Test func badMagicIsFatalAndSticky() throws {
        var d = try decoder()
        var bytes = req(.read).encoded()
        bytes[0] ^= 0xFF
        let (actions, error) = run(&d, bytes, bytewise: true)
        #expect(actions.isEmpty)
        #expect(error == .badRequestMagic(0xDA60_9513))
        #expect(throws: NBDProtocolError.badRequestMagic(0xDA60_9513)) { try d.next() }
    }

    @Test func oversizedWriteIsFatal() throws {
        var d = try decoder()
        let header = Array(req(.write, length: (32 << 20) + 512, payload: []).encoded())
        let (_, error) = run(&d, header)
        #expect(error == .writePayloadTooLarge(length: (32 << 20) + 512, maximum: 32 << 20))
    }

    @Test func oversizedReadIsEinval() throws {
        var d = try decoder()
        let (actions, error) = run(&d, req(.read, length: (32 << 20) + 512).encoded() + req(.read, cookie: 2).encoded())
        #expect(error == nil)
        #expect(rejection(actions.first) == .einval)
        #expect(actions.last == .request(req(.read, cookie: 2)))
    }

    @Test func disconnectEndsStreamAndIgnoresTrailingBytes() throws {
        var d = try decoder()
        let (actions, error) = run(&d, req(.disconnect, length: 0).encoded() + req(.read).encoded())
        #expect(error == nil)
        #expect(actions == [.disconnect])
        d.receive([1, 2, 3])
        #expect(try d.next() == nil)
    }

    /// Every rejectable case, each followed by a valid READ to prove the stream
    /// stays in sync (in particular that rejected WRITE payloads are skipped).
    @Test(arguments: [
        // (description, request, expected error)
        ("unknown command", NBDRequest(command: .init(rawValue: 99), cookie: 1, offset: 0, length: 4096), NBD.ErrorCode.einval),
        ("block status without meta context", NBDRequest(command: .blockStatus, cookie: 1, offset: 0, length: 4096), .einval),
        ("cache not advertised", NBDRequest(command: .cache, cookie: 1, offset: 0, length: 4096), .einval),
        ("resize not advertised", NBDRequest(command: .resize, cookie: 1, offset: 0, length: 0), .einval),
        ("read length 0", NBDRequest(command: .read, cookie: 1, offset: 0, length: 0), .einval),
        ("write length 0", NBDRequest(command: .write, cookie: 1, offset: 0, length: 0), .einval),
        ("trim length 0", NBDRequest(command: .trim, cookie: 1, offset: 0, length: 0), .einval),
        ("read beyond end", NBDRequest(command: .read, cookie: 1, offset: size - 512, length: 1024), .einval),
        ("read offset beyond end", NBDRequest(command: .read, cookie: 1, offset: UInt64.max - 10, length: 512), .einval),
        ("trim beyond end", NBDRequest(command: .trim, cookie: 1, offset: size, length: 512), .einval),
        ("write beyond end", NBDRequest(command: .write, cookie: 1, offset: size - 512, length: 1024, payload: .init(repeating: 1, count: 1024)), .enospc),
        ("write zeroes beyond end", NBDRequest(command: .writeZeroes, cookie: 1, offset: size, length: 512), .enospc),
        ("write with unknown flag", NBDRequest(command: .write, flags: .init(rawValue: 0x4000), cookie: 1, offset: 0, length: 512, payload: .init(repeating: 1, count: 512)), .einval),
        ("write with DF flag", NBDRequest(command: .write, flags: .doNotFragment, cookie: 1, offset: 0, length: 512, payload: .init(repeating: 1, count: 512)), .einval),
        ("read with DF (no structured replies)", NBDRequest(command: .read, flags: .doNotFragment, cookie: 1, offset: 0, length: 512), .einval),
        ("trim with NO_HOLE", NBDRequest(command: .trim, flags: .noHole, cookie: 1, offset: 0, length: 512), .einval),
        ("unaligned offset", NBDRequest(command: .read, cookie: 1, offset: 100, length: 512), .einval),
        ("unaligned length", NBDRequest(command: .write, cookie: 1, offset: 0, length: 100, payload: .init(repeating: 1, count: 100)), .einval),
    ])
    func invalidRequestsAreRejectedAndStreamStaysInSync(_ c: (String, NBDRequest, NBD.ErrorCode)) throws {
        let (name, bad, code) = c
        for bytewise in [false, true] {
            var d = try decoder()
            let follow = req(.read, cookie: 77)
            let (actions, error) = run(&d, bad.encoded() + follow.encoded(), bytewise: bytewise)
            #expect(error == nil, "\(name)")
            #expect(actions.count == 2, "\(name)")
            guard case .reject(let cookie, let e, let reason)? = actions.first else {
                Issue.record("\(name): not rejected: \(actions)")
                continue
            }
            #expect(cookie == 1 && e == code, "\(name): got \(e) (\(reason))")
            #expect(!reason.isEmpty)
            #expect(actions.last == .request(follow), "\(name)")
        }
    }

    @Test func unadvertisedFeaturesAreRejected() throws {
        var d = try decoder(flags: [.hasFlags])
        let bad = [
            req(.flush, length: 0), req(.trim), req(.writeZeroes), req(.read, .fua),
            req(.write, .fua, length: 512),
        ]
        let (actions, error) = run(&d, bad.flatMap { $0.encoded() })
        #expect(error == nil)
        #expect(actions.map(rejection) == Array(repeating: .einval, count: bad.count))

        var z = try decoder(flags: [.hasFlags, .sendWriteZeroes])
        let (za, _) = run(&z, req(.writeZeroes, .fastZero).encoded())
        #expect(rejection(za.first) == .einval, "FAST_ZERO needs SEND_FAST_ZERO")
    }

    @Test func readOnlyExportRejectsWritesWithEperm() throws {
        var d = try decoder(flags: NBDExport.defaultFlags.union(.readOnly))
        let (actions, error) = run(&d, [req(.write, length: 512), req(.trim), req(.writeZeroes), req(.read, cookie: 5)].flatMap { $0.encoded() })
        #expect(error == nil)
        #expect(actions.prefix(3).map(rejection) == [.eperm, .eperm, .eperm])
        #expect(actions.last == .request(req(.read, cookie: 5)))
    }

    @Test func lastPartialBlockMayBeUnalignedInLength() throws {
        var d = NBDRequestDecoder(export: try NBDExport(name: "odd", size: 4096 + 100))
        let (actions, _) = run(&d, req(.read, offset: 4096, length: 100).encoded())
        #expect(actions == [.request(req(.read, offset: 4096, length: 100))])
    }

    /// 1 MiB writes arrive in 64 KiB socket reads. (Decoding speed is measured in perf/Benchmarks,
    /// NBDRequestBenchmarks.)
    @Test func largeWritesDecodeFromSocketSizedReads() throws {
        var d = try decoder()
        let requests = (0..<8).map { i in
            req(.write, cookie: UInt64(i), offset: UInt64(i) << 20, length: 1 << 20,
                payload: [UInt8](repeating: UInt8(i), count: 1 << 20))
        }
        let stream = requests.flatMap { $0.encoded() }
        var actions: [NBDRequestDecoder.Action] = []
        var i = 0
        while i < stream.count {
            d.receive(stream[i..<min(i + 65536, stream.count)])
            while let a = try d.next() { actions.append(a) }
            i += 65536
        }
        #expect(actions == requests.map { .request($0) })
        #expect(d.bufferedByteCount == 0)
    }

    @Test func simpleReplyEncoding() {
        let r = NBDSimpleReply(cookie: 0x0102_0304_0506_0708, error: .enospc)
        #expect(r.header == [0x67, 0x44, 0x66, 0x98, 0, 0, 0, 28, 1, 2, 3, 4, 5, 6, 7, 8])
        #expect(NBDSimpleReply(header: r.header) == r)
        #expect(NBDSimpleReply(header: [0, 0]) == nil)
        #expect(NBD.ErrorCode.eperm.rawValue == 1 && NBD.ErrorCode.eio.rawValue == 5 && NBD.ErrorCode.enomem.rawValue == 12)
        #expect(NBD.ErrorCode.einval.rawValue == 22 && NBD.ErrorCode.eoverflow.rawValue == 75)
        #expect(NBD.ErrorCode.enotsup.rawValue == 95 && NBD.ErrorCode.eshutdown.rawValue == 108)
        #expect(NBD.ErrorCode(linuxErrno: 122) == .enospc)   // EDQUOT
        #expect(NBD.ErrorCode(linuxErrno: 27) == .enospc)    // EFBIG
        #expect(NBD.ErrorCode(linuxErrno: 30) == .eperm)     // EROFS
        #expect(NBD.ErrorCode(linuxErrno: 61) == .eio)       // ENODATA → generic
    }

    /// Full flow: handshake, pipelined request, decoder continues from hand-over.
    @Test func handshakeToTransmission() throws {
        var hs = NBDServerHandshake(exports: [try NBDExport(name: "d", size: Self.size)])
        let w = req(.write, cookie: 3, length: 512)
        let input = NBDTestClient.clientFlags() + NBDTestClient.option(.go, NBDTestClient.goData("d")) + w.encoded()
        var decoder: NBDRequestDecoder?
        var actions = [NBDRequestDecoder.Action]()
        for b in input {
            if var dec = decoder {
                dec.receive([b])
                while let a = try dec.next() { actions.append(a) }
                decoder = dec
            } else {
                for e in hs.receive([b]).events {
                    if case .exportSelected(let x, let rest) = e {
                        var dec = NBDRequestDecoder(export: x)
                        dec.receive(rest)
                        decoder = dec
                    }
                }
            }
        }
        #expect(actions == [.request(w)])
    }
}
