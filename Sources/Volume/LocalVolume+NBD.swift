import Logging

extension LocalVolume {
    /// Executes one NBD request and sends its reply. Isolated to the volume, so the request's
    /// buffers never cross an isolation boundary.
    func serve(_ request: NBDRequest, replies: ReplyWriter, export: NBDExport, logger: Logger) async {
        let offset = request.offset, length = Int(request.length)
        let fua = request.flags.contains(.fua)
        var error = NBD.ErrorCode.none
        func code(_ e: VolumeError) -> NBD.ErrorCode {
            logger.warning("NBD request failed", metadata: ["export": "\(export.name)", "error": "\(e)"])
            return NBD.ErrorCode(linuxErrno: e.errno.rawValue)
        }
        switch request.command {
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
}
