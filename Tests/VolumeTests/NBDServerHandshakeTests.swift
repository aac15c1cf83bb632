import Testing
@testable import Volume

@Suite struct NBDServerHandshakeTests {
    typealias C = NBDTestClient

    static func exports() throws -> [NBDExport] {
        [
            try NBDExport(name: "vm1-disk0", description: "root disk", size: 10 << 30),
            try NBDExport(name: "vm1-disk1", size: 1 << 30, flags: [.readOnly]),
        ]
    }

    func handshake(default d: String? = nil) throws -> NBDServerHandshake {
        NBDServerHandshake(exports: try Self.exports(), defaultExportName: d)
    }

    @Test func greetingIsMagicIHaveOptAndFlags() {
        let g = NBDServerHandshake.greeting
        #expect(g.count == 18)
        #expect(Array(g[0..<8]) == Array("NBDMAGIC".utf8))
        #expect(Array(g[8..<16]) == Array("IHAVEOPT".utf8))
        #expect(g[16] == 0 && g[17] == 0b11)  // FIXED_NEWSTYLE | NO_ZEROES
    }

    @Test(arguments: [false, true])
    func goSelectsExportWithInfoReplies(bytewise: Bool) throws {
        var hs = try handshake()
        let input = C.clientFlags() + C.option(.go, C.goData("vm1-disk0", infos: [.blockSize, .name, .description]))
        let out = bytewise ? hs.receiveBytewise(input) : hs.receive(input)
        let export = try #require(out.selectedExport)
        #expect(export.name == "vm1-disk0")
        #expect(hs.isFinished)
        let replies = try #require(C.parseReplies(out.bytesToSend))
        #expect(replies.map(\.type) == [.info, .info, .info, .info, .ack])
        #expect(replies.allSatisfy { $0.option == .go })
        // NBD_INFO_EXPORT: type 0, size, flags
        let exp = replies[0].data
        #expect(exp.count == 12)
        #expect(exp.readBigEndian(at: 0, as: UInt16.self) == 0)
        #expect(exp.readBigEndian(at: 2, as: UInt64.self) == 10 << 30)
        let flags = NBD.TransmissionFlags(rawValue: exp.readBigEndian(at: 10))
        #expect(flags == NBDExport.defaultFlags)
        #expect(flags.isSuperset(of: [.hasFlags, .sendFlush, .sendFUA, .sendTrim, .sendWriteZeroes, .sendFastZero, .canMultiConn]))
        #expect(replies[1].data == [0, 1] + Array("vm1-disk0".utf8))
        #expect(replies[2].data == [0, 2] + Array("root disk".utf8))
        let bs = replies[3].data
        #expect(bs.count == 14 && bs.readBigEndian(at: 0, as: UInt16.self) == 3)
        #expect(bs.readBigEndian(at: 2, as: UInt32.self) == 512)
        #expect(bs.readBigEndian(at: 6, as: UInt32.self) == 4096)
        #expect(bs.readBigEndian(at: 10, as: UInt32.self) == 32 << 20)
    }

    @Test func infoStaysInNegotiationThenGo() throws {
        var hs = try handshake()
        var out = hs.receive(C.clientFlags() + C.option(.info, C.goData("vm1-disk1")))
        #expect(out.selectedExport == nil && !hs.isFinished)
        let replies = try #require(C.parseReplies(out.bytesToSend))
        #expect(replies.map(\.type) == [.info, .info, .ack])  // export + block size, no name/description unasked
        let flags = NBD.TransmissionFlags(rawValue: replies[0].data.readBigEndian(at: 10))
        #expect(flags.contains(.readOnly) && flags.contains(.hasFlags))
        out = hs.receive(C.option(.go, C.goData("vm1-disk1")))
        #expect(out.selectedExport?.name == "vm1-disk1")
        #expect(hs.receive([0]).failure == .dataAfterEnd, "bytes belong to the request decoder now")
    }

    @Test func unknownExportInGoIsErrUnknownAndNegotiationContinues() throws {
        var hs = try handshake()
        let out = hs.receive(C.clientFlags() + C.option(.go, C.goData("nope")))
        let replies = try #require(C.parseReplies(out.bytesToSend))
        #expect(replies.count == 1 && replies[0].type == .errUnknown)
        #expect(String(decoding: replies[0].data, as: UTF8.self).contains("nope"))
        #expect(!hs.isFinished)
        #expect(hs.receive(C.option(.go, C.goData("vm1-disk0"))).selectedExport != nil)
    }

    @Test func emptyNameSelectsConfiguredDefault() throws {
        var hs = try handshake(default: "vm1-disk1")
        #expect(hs.receive(C.clientFlags() + C.option(.go, C.goData(""))).selectedExport?.name == "vm1-disk1")
        var noDefault = try handshake()
        let out = noDefault.receive(C.clientFlags() + C.option(.go, C.goData("")))
        #expect(C.parseReplies(out.bytesToSend)?.first?.type == .errUnknown)
    }

    @Test(arguments: [
        [UInt8](),                                   // shorter than 6
        [0, 0, 0, 9, 0x61, 0, 0],                    // name length beyond data
        C.goData("vm1-disk0", infos: [.name]) + [0], // trailing garbage
        Array(C.goData("vm1-disk0", infos: [.name]).dropLast()), // truncated info list
        [0, 0, 0, 2, 0xC3, 0x28, 0, 0],              // invalid UTF-8 name
    ])
    func malformedGoIsErrInvalid(data: [UInt8]) throws {
        var hs = try handshake()
        let out = hs.receive(C.clientFlags() + C.option(.go, data))
        #expect(C.parseReplies(out.bytesToSend)?.map(\.type) == [.errInvalid])
        #expect(!hs.isFinished)
        #expect(out.events.contains { if case .optionRefused(.go, .errInvalid, _) = $0 { true } else { false } })
    }

    @Test func listReturnsEveryExportThenAck() throws {
        var hs = try handshake()
        let out = hs.receiveBytewise(C.clientFlags() + C.option(.list))
        let replies = try #require(C.parseReplies(out.bytesToSend))
        #expect(replies.map(\.type) == [.server, .server, .ack])
        #expect(replies[0].data == [0, 0, 0, 9] + Array("vm1-disk0root disk".utf8))
        #expect(replies[1].data == [0, 0, 0, 9] + Array("vm1-disk1".utf8))
        let bad = hs.receive(C.option(.list, [1]))
        #expect(C.parseReplies(bad.bytesToSend)?.map(\.type) == [.errInvalid])
    }

    @Test func abortAcksAndFinishes() throws {
        var hs = try handshake()
        let out = hs.receive(C.clientFlags() + C.option(.abort))
        #expect(out.events == [.aborted])
        #expect(C.parseReplies(out.bytesToSend) == [.init(option: .abort, type: .ack, data: [])])
        #expect(hs.isFinished)
        #expect(hs.receive([1]).events.isEmpty, "bytes after abort are ignored")
    }

    @Test(arguments: [NBD.Option.startTLS, .extendedHeaders, NBD.Option(rawValue: 4242)])
    func unsupportedOptionsAreErrUnsup(option: NBD.Option) throws {
        var hs = try handshake()
        let out = hs.receiveBytewise(C.clientFlags() + C.option(option, [1, 2, 3]))
        let replies = try #require(C.parseReplies(out.bytesToSend))
        #expect(replies.count == 1 && replies[0].type == .errUnsupported && replies[0].option == option)
        #expect(!hs.isFinished)
    }

    /// Structured replies with data and meta contexts before them are invalid, whichever way the
    /// bytes arrive; negotiated, they carry into the transmission phase (issue 18).
    @Test func structuredRepliesAndMetaContextsAreNegotiated() throws {
        var hs = try handshake()
        var out = hs.receiveBytewise(C.clientFlags() + C.option(.structuredReply, [1, 2, 3]) + C.option(.listMetaContext, [1, 2, 3]))
        #expect(C.parseReplies(out.bytesToSend)?.map(\.type) == [.errInvalid, .errInvalid])
        var query = [UInt8]()
        query.appendBigEndian(UInt32(9)); query += Array("vm1-disk0".utf8); query.appendBigEndian(UInt32(1))
        query.appendBigEndian(UInt32(5)); query += Array("base:".utf8)
        out = hs.receiveBytewise(C.option(.structuredReply) + C.option(.setMetaContext, query))
        let replies = try #require(C.parseReplies(out.bytesToSend))
        #expect(replies.map(\.type) == [.ack, .metaContext, .ack])
        #expect(hs.negotiated == NBDNegotiated(structuredReplies: true, metaContexts: [("base:allocation", 1)]))
        #expect(!hs.isFinished)
    }

    @Test func exportNameLegacyRepliesSizeFlagsAndZeroes() throws {
        var hs = try handshake()
        var out = hs.receive(C.clientFlags([.fixedNewstyle]) + C.option(.exportName, Array("vm1-disk0".utf8)))
        #expect(out.selectedExport?.name == "vm1-disk0")
        #expect(out.bytesToSend.count == 8 + 2 + 124)
        #expect(out.bytesToSend.readBigEndian(at: 0, as: UInt64.self) == 10 << 30)
        #expect(out.bytesToSend[10...].allSatisfy { $0 == 0 })

        var hs2 = try handshake()
        out = hs2.receive(C.clientFlags() + C.option(.exportName, Array("vm1-disk0".utf8)))
        #expect(out.bytesToSend.count == 10, "NO_ZEROES negotiated: no padding")
    }

    @Test func exportNameUnknownIsFatal() throws {
        var hs = try handshake()
        let out = hs.receive(C.clientFlags() + C.option(.exportName, Array("nope".utf8)))
        #expect(out.failure == .unknownExport("nope"))
        #expect(out.bytesToSend.isEmpty)
        #expect(hs.isFinished)
    }

    @Test func clientFlagValidation() throws {
        var hs = try handshake()
        #expect(hs.receive(C.clientFlags(NBD.ClientFlags(rawValue: 0b111))).failure == .unknownClientFlags(0b111))
        var hs2 = try handshake()
        #expect(hs2.receive(C.clientFlags([.noZeroes])).failure == .clientNotFixedNewstyle)
    }

    @Test func badOptionMagicIsFatal() throws {
        var hs = try handshake()
        let out = hs.receiveBytewise(C.clientFlags() + C.option(.go, C.goData("vm1-disk0"), magic: 0x1234))
        #expect(out.failure == .badOptionMagic(0x1234))
        #expect(out.events.count == 1, "failure is reported once, later bytes are ignored")
    }

    @Test func oversizedOptionIsDiscardedAndRefused() throws {
        var hs = try handshake()
        let big = [UInt8](repeating: 7, count: Int(NBDServerHandshake.maximumOptionLength) + 1)
        var out = hs.receive(C.clientFlags() + C.option(.go, big).prefix(1000))
        #expect(out.bytesToSend.isEmpty)
        out = hs.receive(C.option(.go, big).dropFirst(1000) + C.option(.go, C.goData("vm1-disk0")))
        let replies = try #require(C.parseReplies(out.bytesToSend))
        #expect(replies.first?.type == .errTooBig)
        #expect(out.selectedExport?.name == "vm1-disk0")
        var hs2 = try handshake()
        #expect(hs2.receive(C.clientFlags() + C.option(.exportName, big)).failure == .exportNameTooLong(UInt32(big.count)))
    }

    @Test func pipelinedTransmissionBytesAreHandedOver() throws {
        var hs = try handshake()
        let request = NBDRequest(command: .read, cookie: 7, offset: 0, length: 4096).encoded()
        let out = hs.receive(C.clientFlags() + C.option(.go, C.goData("vm1-disk0")) + request)
        guard case .exportSelected(_, let remaining)? = out.events.last else {
            Issue.record("no export selected")
            return
        }
        #expect(remaining == request)
    }

    @Test func exportConfigurationIsValidated() {
        #expect(throws: NBDExport.ConfigurationError.self) {
            try NBDExport(name: "x", size: 1, blockSizes: .init(minimum: 3, preferred: 4096, maximum: 1 << 20))
        }
        #expect(throws: NBDExport.ConfigurationError.self) {
            try NBDExport(name: "x", size: 1, blockSizes: .init(minimum: 512, preferred: 256, maximum: 1 << 20))
        }
        #expect(throws: NBDExport.ConfigurationError.nameTooLong(5000)) {
            try NBDExport(name: String(repeating: "a", count: 5000), size: 1)
        }
        #expect((try? NBDExport(name: "x", size: 1, flags: [.sendFlush]))?.flags == [.hasFlags, .sendFlush])
    }
}
