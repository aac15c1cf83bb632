import CUring
import Dispatch
import Foundation
import Locking
import Logging
import SystemCalls
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// An io_uring instance owned by one long-lived thread that both submits and reaps.
///
/// The kernel ties a request to the thread that submitted it and cancels it when that thread
/// exits, so requests are never submitted from Swift's cooperative pool: callers enqueue under a
/// lock and the owner thread turns the queue into SQEs in batches. A sleeping owner is woken
/// through an eventfd whose read is always armed on the ring itself, so the owner has exactly one
/// place to block (`io_uring_submit_and_wait`).
///
/// The ring is also a `TaskExecutor`: a task started with the ring as its executor preference
/// (`Task(executorPreference: ring)`, `group.addTask(executorPreference: ring)`) runs on the owner
/// thread, so its requests reach the SQ without a lock hand-off or a wake-up, and the jobs
/// resumed by one batch of completions submit their next requests in one `io_uring_enter` —
/// the event-loop model of SwiftNIO, with the ring as the loop.
///
/// Buffers passed to an operation must stay valid until it returns. Every operation returns only
/// after its CQE arrived, also when the calling task is cancelled (the request is then cancelled
/// in the kernel and the operation throws `Errno.canceled`), so borrowed memory is never freed
/// under the kernel's feet.
public final class IOUring: Sendable {
    public struct Options: Sendable {
        /// Submission queue entries (the completion queue is twice as large).
        public var entries: UInt32 = 256
        /// `IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN`: completions run only when the
        /// owner waits, which saves interrupts; falls back to a plain ring on older kernels.
        public var deferTaskrun: Bool = true
        public init() {}
    }

    private struct State {
        var pending: [Request] = []
        var jobs: [UnownedJob] = []
        var ownerSleeping = false
        var shuttingDown = false
        var finished = false
        var nextID: UInt64 = 1
        var finishWaiters: [CheckedContinuation<Void, Never>] = []
    }

    @usableFromInline
    struct Request: @unchecked Sendable {
        var operation: IOUringOperation
        var id: UInt64
        var continuation: CheckedContinuation<Int32, Never>?
    }

    /// Ties a task's cancellation to the request id it was given (guarded by the ring's lock).
    @usableFromInline
    final class CancelToken: @unchecked Sendable {
        var id: UInt64 = 0
        var cancelled = false
        @usableFromInline init() {}
    }

    private static let wakeID = UInt64.max
    private static let ignoredID: UInt64 = 0

    private let state = Locked(State())
    private let owner = Locked<pthread_t?>(nil)
    private let wakeFD: Int32
    private nonisolated(unsafe) let ring: UnsafeMutablePointer<io_uring>
    private let logger: Logger

    /// Creates the ring on a new owner thread. Throws ``IOUringError/unavailable(_:)`` where the
    /// kernel refuses io_uring (EPERM/ENOSYS), with a message that says so.
    public init(options: Options = Options(), logger: Logger) throws(IOUringError) {
        self.logger = logger
        self.ring = .allocate(capacity: 1)
        let efd: Int32
        do {
            efd = try Syscall.call("eventfd") { eventfd(0, Int32(EFD_CLOEXEC)) }
        } catch {
            ring.deallocate()
            throw .setupFailed(error)
        }
        self.wakeFD = efd

        // The ring is created on the owner thread: with SINGLE_ISSUER the creator is the issuer.
        let ready = DispatchSemaphore(value: 0)
        let setup = Locked<Int32>(0)
        let thread = Thread { [self] in
            self.owner.withLock { $0 = pthread_self() }
            let result = IOUring.setUp(self.ring, options: options)
            setup.withLock { $0 = result }
            ready.signal()
            if result == 0 { self.run() }
        }
        thread.name = "vmha-io_uring"
        thread.start()
        ready.wait()
        let result = setup.withLock { $0 }
        if result < 0 {
            _ = try? Syscall.call("close", retryOnInterrupt: false) { close(efd) }
            self.ring.deallocate()
            let errno = Errno(rawValue: -result)
            if errno == .permissionDenied || errno == .noFunction || errno == .notPermitted {
                throw .unavailable(errno)
            }
            throw .setupFailed(SystemCallError("io_uring_queue_init_params", errno))
        }
    }

    private static func setUp(_ ring: UnsafeMutablePointer<io_uring>, options: Options) -> Int32 {
        var params = io_uring_params()
        params.flags = UInt32(IORING_SETUP_CQSIZE)
        params.cq_entries = options.entries * 2
        if options.deferTaskrun {
            params.flags |= UInt32(IORING_SETUP_SINGLE_ISSUER) | UInt32(IORING_SETUP_DEFER_TASKRUN)
            let result = io_uring_queue_init_params(options.entries, ring, &params)
            if result != -EINVAL { return result }
            params.flags = UInt32(IORING_SETUP_CQSIZE)
        }
        return io_uring_queue_init_params(options.entries, ring, &params)
    }

    /// True on the ring's owner thread: where tasks preferring this ring as executor run.
    public var isOwnerThread: Bool {
        guard let owner = owner.withLock({ $0 }) else { return false }
        return pthread_equal(owner, pthread_self()) != 0
    }

    deinit {
        // `shutdown()` must have completed; the owner thread held `self` until then.
        _ = try? Syscall.call("close", retryOnInterrupt: false) { close(wakeFD) }
        ring.deallocate()
    }

    /// Stops accepting requests, waits for every in-flight request to complete, then tears the
    /// ring down. Safe to call more than once.
    public func shutdown() async {
        await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
            let (alreadyDone, wake) = state.withLock { s -> (Bool, Bool) in
                if s.finished { return (true, false) }
                s.shuttingDown = true
                s.finishWaiters.append(waiter)
                let wake = s.ownerSleeping
                s.ownerSleeping = false
                return (false, wake)
            }
            if alreadyDone { waiter.resume() }
            if wake { signalOwner() }
        }
    }

    // MARK: Submission side (any thread)

    /// Submits a request that completes on its own (file I/O): no cancellation bookkeeping on the
    /// hot path, since the kernel finishes such requests in bounded time anyway.
    @usableFromInline
    nonisolated(nonsending) func perform(_ operation: IOUringOperation) async -> Int32 {
        await withCheckedContinuation { (continuation: CheckedContinuation<Int32, Never>) in
            self.enqueue(operation, token: nil, continuation: continuation)
        }
    }

    /// Submits a request that may wait indefinitely (socket I/O, timeouts): cancelling the calling
    /// task cancels it in the kernel.
    @usableFromInline
    nonisolated(nonsending) func performCancellable(_ operation: IOUringOperation) async -> Int32 {
        let token = CancelToken()
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Int32, Never>) in
                self.enqueue(operation, token: token, continuation: continuation)
            }
        } onCancel: {
            self.cancel(token)
        }
    }

    private func enqueue(
        _ operation: IOUringOperation, token: CancelToken?, continuation: CheckedContinuation<Int32, Never>
    ) {
        let (immediate, wake) = state.withLock { s -> (Int32?, Bool) in
            if s.shuttingDown { return (-ESHUTDOWN, false) }
            if let token, token.cancelled { return (-ECANCELED, false) }
            let id = s.nextID
            s.nextID &+= 1
            token?.id = id
            s.pending.append(Request(operation: operation, id: id, continuation: continuation))
            let wake = s.ownerSleeping
            s.ownerSleeping = false
            return (nil, wake)
        }
        if let immediate { continuation.resume(returning: immediate) }
        if wake { signalOwner() }
    }

    private func cancel(_ token: CancelToken) {
        let wake = state.withLock { s -> Bool in
            guard token.id != 0 else {
                token.cancelled = true
                return false
            }
            s.pending.append(Request(operation: .cancel(target: token.id), id: Self.ignoredID, continuation: nil))
            let wake = s.ownerSleeping
            s.ownerSleeping = false
            return wake
        }
        if wake { signalOwner() }
    }

    private func signalOwner() {
        var one: UInt64 = 1
        // EAGAIN means the counter is already non-zero: the owner will wake anyway.
        _ = try? Syscall.call("write") { Glibc.write(wakeFD, &one, 8) }
    }

    // MARK: Owner thread

    private func run() {
        var inFlight: [UInt64: CheckedContinuation<Int32, Never>] = [:]
        var batch: [Request] = []
        var jobs: [UnownedJob] = []
        let executor = asUnownedTaskExecutor()
        let serialExecutor = asUnownedSerialExecutor()
        var wakeArmed = false
        let wakeBuffer = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
        let cqes = UnsafeMutablePointer<UnsafeMutablePointer<io_uring_cqe>?>.allocate(capacity: 128)
        defer {
            io_uring_queue_exit(ring)
            wakeBuffer.deallocate()
            cqes.deallocate()
        }

        func sqe() -> UnsafeMutablePointer<io_uring_sqe> {
            while true {
                if let sqe = io_uring_get_sqe(ring) { return sqe }
                submit()
            }
        }

        // A partial submit leaves SQEs behind: loop until the SQ is empty (liburing#309).
        func submit() {
            while io_uring_sq_ready(ring) > 0 {
                let result = io_uring_submit(ring)
                if result >= 0 { continue }
                if result == -EINTR { continue }
                if result == -EBUSY || result == -EAGAIN {
                    reap()
                    continue
                }
                logger.critical("io_uring_submit failed", metadata: ["errno": "\(Errno(rawValue: -result))"])
                fatalError("io_uring_submit: \(Errno(rawValue: -result))")
            }
        }

        func reap() {
            while true {
                let count = Int(io_uring_peek_batch_cqe(ring, cqes, 128))
                if count == 0 { return }
                for index in 0..<count {
                    let cqe = cqes[index]!
                    let id = cqe.pointee.user_data
                    let res = cqe.pointee.res
                    if id == Self.wakeID {
                        wakeArmed = false
                    } else if id != Self.ignoredID, let continuation = inFlight.removeValue(forKey: id) {
                        continuation.resume(returning: res)
                    }
                }
                io_uring_cq_advance(ring, UInt32(count))
            }
        }

        while true {
            if !wakeArmed {
                let entry = sqe()
                io_uring_prep_read(entry, wakeFD, wakeBuffer, 8, 0)
                io_uring_sqe_set_data64(entry, Self.wakeID)
                wakeArmed = true
            }
            let stop = state.withLock { s -> Bool in
                swap(&batch, &s.pending)
                swap(&jobs, &s.jobs)
                guard batch.isEmpty && jobs.isEmpty else { return false }
                if s.shuttingDown && inFlight.isEmpty { return true }
                s.ownerSleeping = true
                return false
            }
            if stop { break }

            if batch.isEmpty && jobs.isEmpty {
                let result = io_uring_submit_and_wait(ring, 1)
                if result < 0 && result != -EINTR && result != -ETIME && result != -EBUSY {
                    fatalError("io_uring_submit_and_wait: \(Errno(rawValue: -result))")
                }
                reap()
                continue
            }

            for request in batch {
                if case .onOwner(let body) = request.operation {
                    request.continuation?.resume(returning: body(ring))
                    continue
                }
                let entry = sqe()
                request.operation.prepare(entry)
                io_uring_sqe_set_data64(entry, request.id)
                if let continuation = request.continuation { inFlight[request.id] = continuation }
            }
            batch.removeAll(keepingCapacity: true)
            // Jobs run after the batch went into the SQ; the requests they make go out with the
            // next iteration's batch.
            for job in jobs { job.runSynchronously(isolatedTo: serialExecutor, taskExecutor: executor) }
            jobs.removeAll(keepingCapacity: true)
            submit()
            reap()
        }

        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.finished = true
            defer { s.finishWaiters = [] }
            return s.finishWaiters
        }
        for waiter in waiters { waiter.resume() }
    }
}

extension IOUring: TaskExecutor, SerialExecutor {
    /// Jobs run one at a time on the owner thread, so the ring can also be an actor's executor:
    /// an actor whose `unownedExecutor` is the ring keeps its state on the thread that submits its
    /// I/O, without hops.
    public func checkIsolated() {
        precondition(isOwnerThread, "not on the io_uring owner thread")
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let (wake, finished) = state.withLock { s -> (Bool, Bool) in
            if s.finished { return (false, true) }
            s.jobs.append(job)
            let wake = s.ownerSleeping
            s.ownerSleeping = false
            return (wake, false)
        }
        // A job for a ring that is gone still has to run somewhere: run it here, its ring
        // requests fail with ESHUTDOWN.
        if finished { job.runSynchronously(on: asUnownedTaskExecutor()) }
        if wake { signalOwner() }
    }
}
