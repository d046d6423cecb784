#if canImport(Glibc)
import CertgateSystem
import CertgateLocking
import Glibc
#endif
internal import CLinux
import Synchronization

/// What an event loop watches a descriptor for.
public struct Interest: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let readable = Interest(rawValue: EPOLLIN.rawValue | EPOLLRDHUP.rawValue)
    public static let writable = Interest(rawValue: EPOLLOUT.rawValue)
    /// A listening socket shared by several loops: readable, waking only one of them
    /// (EPOLLEXCLUSIVE admits no other flags, so not `.readable`'s EPOLLRDHUP).
    public static let acceptable = Interest(rawValue: EPOLLIN.rawValue | EPOLLEXCLUSIVE.rawValue)
}

/// Readiness reported by epoll for one descriptor.
public struct Readiness: Sendable {
    public let rawValue: UInt32
    public var isReadable: Bool { rawValue & (EPOLLIN.rawValue | EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 }
    public var isWritable: Bool { rawValue & (EPOLLOUT.rawValue | EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0 }
    public var isHangup: Bool { rawValue & (EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 }
}

/// Something registered with an event loop. Called on the loop's thread only.
public protocol EventHandler: AnyObject {
    func handle(_ readiness: Readiness)
}

/// One thread running epoll over many descriptors.
///
/// Everything registered with a loop is touched only from that loop's thread; other
/// threads hand work to it with ``execute(_:)``, which wakes it through an eventfd.
public final class EventLoop: @unchecked Sendable {
    // @unchecked: `handlers`, `tickHandlers` and `scratch` are used only on the loop thread;
    // `pendingTasks` and `state` are behind Mutex/Atomic; descriptors are immutable.
    public let name: String
    private let epollFD: Int32
    private let wakeFD: Int32
    private var handlers: [Int32: EventHandler] = [:]
    private var tickHandlers: [ObjectIdentifier: () -> Void] = [:]
    private let pendingTasks = Locked<[@Sendable () -> Void]>([])
    private let stopping = Atomic<Bool>(false)
    private var thread: pthread_t?
    /// How often tick handlers run (timeouts are checked at this granularity).
    public let tickInterval: Int32 = 250

    /// A read buffer shared by everything on this loop (one read is processed at a time).
    public let scratch: UnsafeMutableRawBufferPointer

    public init(name: String) throws {
        self.name = name
        epollFD = try Syscall.call("epoll_create1") { epoll_create1(Int32(EPOLL_CLOEXEC)) }
        wakeFD = try Syscall.call("eventfd") { eventfd(0, Int32(EFD_NONBLOCK) | Int32(EFD_CLOEXEC)) }
        scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
        var event = epoll_event(events: EPOLLIN.rawValue, data: epoll_data_t(fd: wakeFD))
        _ = try Syscall.call("epoll_ctl(ADD eventfd)") { epoll_ctl(epollFD, EPOLL_CTL_ADD, wakeFD, &event) }
    }

    deinit {
        Glibc.close(epollFD)
        Glibc.close(wakeFD)
        scratch.deallocate()
    }

    /// Starts the loop's thread.
    public func start() {
        thread = startThread(name: name) { [self] in run() }
    }

    /// Runs `task` on the loop's thread, soon.
    public func execute(_ task: @escaping @Sendable () -> Void) {
        pendingTasks.withLock { $0.append(task) }
        var one: UInt64 = 1
        _ = Glibc.write(wakeFD, &one, 8)
    }

    /// Asks the loop to finish its current pass and exit, and waits for it.
    public func stopAndWait() {
        stopping.store(true, ordering: .releasing)
        execute {}
        if let thread {
            pthread_join(thread, nil)
            self.thread = nil
        }
    }

    // MARK: Loop-thread only

    public func register(_ fd: Int32, interest: Interest, handler: EventHandler) throws {
        var event = epoll_event(events: interest.rawValue, data: epoll_data_t(fd: fd))
        _ = try Syscall.call("epoll_ctl(ADD)") { epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &event) }
        handlers[fd] = handler
    }

    public func setInterest(_ fd: Int32, _ interest: Interest) {
        var event = epoll_event(events: interest.rawValue, data: epoll_data_t(fd: fd))
        epoll_ctl(epollFD, EPOLL_CTL_MOD, fd, &event)
    }

    /// How many descriptors the loop watches (its handlers, the eventfd aside).
    public var watchedDescriptorCount: Int { handlers.count }

    /// Stops watching `fd`; the caller still owns and closes it.
    public func deregister(_ fd: Int32) {
        epoll_ctl(epollFD, EPOLL_CTL_DEL, fd, nil)
        handlers[fd] = nil
    }

    /// Runs `body` every ``tickInterval`` milliseconds until removed with the same `owner`.
    public func addTickHandler(owner: AnyObject, _ body: @escaping () -> Void) {
        tickHandlers[ObjectIdentifier(owner)] = body
    }

    public func removeTickHandler(owner: AnyObject) {
        tickHandlers[ObjectIdentifier(owner)] = nil
    }

    private func run() {
        let capacity = 256
        let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: capacity)
        defer { events.deallocate() }
        var now = monotonicNanoseconds()
        var nextTick = now + UInt64(tickInterval) * 1_000_000
        while !stopping.load(ordering: .acquiring) {
            let wait = now >= nextTick ? 0 : Int32((nextTick - now) / 1_000_000) + 1
            let count = epoll_wait(epollFD, events, Int32(capacity), wait)
            if count < 0 && errno != EINTR { break }
            for i in 0..<max(0, Int(count)) {
                let event = events[i]
                let fd = event.data.fd
                if fd == wakeFD {
                    var value: UInt64 = 0
                    _ = Glibc.read(wakeFD, &value, 8)
                    continue
                }
                handlers[fd]?.handle(Readiness(rawValue: event.events))
            }
            runPendingTasks()
            now = monotonicNanoseconds()
            if now >= nextTick {
                for body in Array(tickHandlers.values) { body() }
                now = monotonicNanoseconds()
                nextTick = now + UInt64(tickInterval) * 1_000_000
            }
        }
        runPendingTasks()
    }

    private func runPendingTasks() {
        let tasks = pendingTasks.withLock { tasks -> [@Sendable () -> Void] in
            let taken = tasks
            tasks.removeAll(keepingCapacity: true)
            return taken
        }
        for task in tasks { task() }
    }
}

/// A fixed set of event loops; connections are spread over them by the kernel.
public final class EventLoopGroup: Sendable {
    public let loops: [EventLoop]

    public init(count: Int, namePrefix: String = "certgate-loop") throws {
        loops = try (0..<max(1, count)).map { try EventLoop(name: "\(namePrefix)-\($0)") }
        for loop in loops { loop.start() }
    }

    /// One loop per core, at least 1 and at most 8: the work per request is short and CPU-bound.
    public static var defaultLoopCount: Int {
        min(8, max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }

    public func stopAndWait() {
        for loop in loops { loop.stopAndWait() }
    }
}
