import Logging
import Uring

extension LocalVolume {
    /// Executes one NBD request and sends its reply. Isolated to the volume, so the request's
    /// buffers never cross an isolation boundary.
    func serve(_ request: NBDRequest, replies: SerializedSender, export: NBDExport, negotiated: NBDNegotiated = NBDNegotiated(), logger: Logger) async {
        let offset = request.offset, length = Int(request.length)
        let fua = request.flags.contains(.fua)
        var error = NBD.ErrorCode.none
        func code(_ e: VolumeError) -> NBD.ErrorCode {
            logger.warning("NBD request failed", metadata: ["export": "\(export.name)", "error": "\(e)"])
            return NBD.ErrorCode(linuxErrno: e.errno.rawValue)
        }
        switch request.command {
        case .read where negotiated.structuredReplies:
            await structuredRead(request, replies: replies, logger: logger, code: code)
            return
        case .blockStatus:
            await blockStatus(request, replies: replies, negotiated: negotiated, code: code)
            return
        case .read:
            // Header and data in one buffer: the data 4 KiB aligned for O_DIRECT, the header just before it.
            let reply = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096 + length, alignment: 4096)
            defer { reply.deallocate() }
            do {
                try await self.read(into: UnsafeMutableRawBufferPointer(rebasing: reply[4096...]), at: offset)
            } catch let e {
                error = code(e)
            }
            let header = NBDSimpleReply(cookie: request.cookie, error: error).header
            UnsafeMutableRawBufferPointer(rebasing: reply[(4096 - header.count)..<4096]).copyBytes(from: header)
            let total = error == .none ? header.count + length : header.count
            await replies.send(UnsafeRawBufferPointer(rebasing: reply[(4096 - header.count)..<(4096 - header.count + total)]))
            return
        case .write:
            let data = UnsafeMutableRawBufferPointer.allocate(byteCount: length, alignment: 4096)
            defer { data.deallocate() }
            data.copyBytes(from: request.payload)
            do { try await self.write(UnsafeRawBufferPointer(data), at: offset, fua: fua) } catch let e { error = code(e) }
        case .flush:
            do { try await self.flush() } catch let e { error = code(e) }
        case .trim:
            do {
                try await self.trim(offset: offset, length: UInt64(length))
                if fua { try await self.flush() }
            } catch let e { error = code(e) }
        case .writeZeroes:
            do {
                try await self.writeZeroes(
                    offset: offset, length: UInt64(length), allocate: request.flags.contains(.noHole), fua: fua)
            } catch let e { error = code(e) }
        default:
            error = .einval
        }
        await replies.send(NBDSimpleReply(cookie: request.cookie, error: error).header)
    }

    /// A READ with structured replies: the data in one OFFSET_DATA chunk, sent from the read
    /// buffer; where the range holds holes, a chunk per extent — OFFSET_HOLE for each hole, so a
    /// client (nbdcopy, qemu-img) skips them.
    private func structuredRead(
        _ request: NBDRequest, replies: SerializedSender, logger: Logger, code: (VolumeError) -> NBD.ErrorCode
    ) async {
        let offset = request.offset, length = Int(request.length)
        let reply = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096 + length, alignment: 4096)
        defer { reply.deallocate() }
        let data = UnsafeMutableRawBufferPointer(rebasing: reply[4096...])
        do {
            try await self.read(into: data, at: offset)
        } catch let e {
            await replies.send(NBDStructuredReply.error(cookie: request.cookie, code(e), message: "\(e)"))
            return
        }
        let extents = (try? allocation(offset: offset, length: UInt64(length), maxCount: 64)) ?? []
        if extents.contains(where: \.hole) {
            var out = [UInt8]()
            var position = offset
            for (index, extent) in extents.enumerated() {
                let last = index == extents.count - 1 && position + extent.length == offset + UInt64(length)
                if extent.hole {
                    out += NBDStructuredReply.hole(cookie: request.cookie, offset: position, length: UInt32(extent.length), done: last)
                } else {
                    out += NBDStructuredReply.header(cookie: request.cookie, type: .offsetData, done: last, length: 8 + Int(extent.length))
                    out.appendBigEndian(position)
                    let start = Int(position - offset)
                    out += UnsafeRawBufferPointer(rebasing: data[start..<(start + Int(extent.length))])
                }
                position += extent.length
            }
            if position < offset + UInt64(length) {
                // More extents than one reply describes: the rest as data.
                out += NBDStructuredReply.header(cookie: request.cookie, type: .offsetData, done: true, length: 8 + Int(offset + UInt64(length) - position))
                out.appendBigEndian(position)
                out += UnsafeRawBufferPointer(rebasing: data[Int(position - offset)...])
            }
            await replies.send(out)
            return
        }
        var header = NBDStructuredReply.header(cookie: request.cookie, type: .offsetData, done: true, length: 8 + length)
        header.appendBigEndian(offset)
        UnsafeMutableRawBufferPointer(rebasing: reply[(4096 - header.count)..<4096]).copyBytes(from: header)
        await replies.send(UnsafeRawBufferPointer(rebasing: reply[(4096 - header.count)...]))
    }

    /// BLOCK_STATUS: one chunk per selected context, the last one done. `base:allocation`: holes
    /// (`SEEK_DATA`/`SEEK_HOLE`) are HOLE|ZERO, data 0; at most one extent with REQ_ONE, else up
    /// to 1024 (the client asks again from where the reply ends).
    private func blockStatus(
        _ request: NBDRequest, replies: SerializedSender, negotiated: NBDNegotiated, code: (VolumeError) -> NBD.ErrorCode
    ) async {
        let most = request.flags.contains(.reqOne) ? 1 : 1024
        let extents: [(length: UInt64, hole: Bool)]
        do {
            extents = try allocation(offset: request.offset, length: UInt64(request.length), maxCount: most)
        } catch let e {
            await replies.send(NBDStructuredReply.error(cookie: request.cookie, code(e), message: "\(e)"))
            return
        }
        var out = [UInt8]()
        for (index, context) in negotiated.metaContexts.enumerated() {
            let descriptors = extents.map { (length: UInt32($0.length), flags: $0.hole ? NBD.stateHole | NBD.stateZero : 0) }
            out += NBDStructuredReply.blockStatus(
                cookie: request.cookie, context: context.id, extents: descriptors, done: index == negotiated.metaContexts.count - 1)
        }
        await replies.send(out)
    }
}