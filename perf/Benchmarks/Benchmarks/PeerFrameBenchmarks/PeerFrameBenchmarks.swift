// Peer link frame coding: 1 MiB WRITE frames (the replicated data) and ACK frames (one per
// replicated write), encoded into a reused buffer and decoded with PeerFrameDecoder + PeerMessage
// from socket-sized reads. Not built until the main package exports the Replication library
// (see Package.swift).
import Benchmark
import Replication

let benchmarks: @Sendable () -> Void = {
    let metrics: [BenchmarkMetric] = [.wallClock, .throughput, .mallocCountTotal]
    let data = [UInt8](repeating: 0x5A, count: 1 << 20)

    // One iteration = one 1 MiB WRITE frame (header + offset + data copied into the buffer).
    var writeOut: [UInt8] = []
    writeOut.reserveCapacity(PeerWrite.prefixSize + data.count)
    var writeSequence: UInt64 = 0
    Benchmark("encode 1 MiB WRITE frame", configuration: .init(metrics: metrics)) { _ in
        writeOut.removeAll(keepingCapacity: true)
        writeSequence &+= 1
        PeerWrite(volumeID: 1, sequence: writeSequence, offset: 0, data: data).encode(into: &writeOut)
        blackHole(writeOut.count)
    }

    // One iteration = one 1 MiB WRITE frame, received in 256 KiB reads.
    let frame = PeerWrite(volumeID: 1, sequence: 1, offset: 0, data: data).encoded()
    let frameReads = stride(from: 0, to: frame.count, by: 256 << 10).map {
        Array(frame[$0..<min($0 + (256 << 10), frame.count)])
    }
    var writeDecoder = PeerFrameDecoder()
    Benchmark("decode 1 MiB WRITE frame", configuration: .init(metrics: metrics)) { _ in
        var bytes = 0
        for read in frameReads {
            writeDecoder.receive(read)
            while let f = try! writeDecoder.next() {
                guard case .write(let write) = try! PeerMessage(frame: f) else { fatalError("not a WRITE") }
                bytes += write.data.count
            }
        }
        precondition(bytes == data.count)
    }

    // One iteration = one ACK frame (1000 into a reused buffer).
    var ackOut: [UInt8] = []
    ackOut.reserveCapacity(1000 * PeerAck.encodedSize)
    Benchmark("encode ACK frame", configuration: .init(metrics: metrics, scalingFactor: .kilo)) { benchmark in
        ackOut.removeAll(keepingCapacity: true)
        for i in benchmark.scaledIterations { PeerAck(volumeID: 1, sequence: UInt64(i)).encode(into: &ackOut) }
        blackHole(ackOut.count)
    }

    // One iteration = one ACK frame (1000 from 64 KiB reads).
    var ackStream: [UInt8] = []
    for i in 0..<1000 { PeerAck(volumeID: 1, sequence: UInt64(i)).encode(into: &ackStream) }
    let ackReads = stride(from: 0, to: ackStream.count, by: 64 << 10).map {
        Array(ackStream[$0..<min($0 + (64 << 10), ackStream.count)])
    }
    var ackDecoder = PeerFrameDecoder()
    Benchmark("decode ACK frame", configuration: .init(metrics: metrics, scalingFactor: .kilo)) { _ in
        var acks = 0
        for read in ackReads {
            ackDecoder.receive(read)
            while let f = try! ackDecoder.next() {
                guard case .ack(let ack) = try! PeerMessage(frame: f) else { fatalError("not an ACK") }
                blackHole(ack)
                acks += 1
            }
        }
        precondition(acks == 1000)
    }
}
