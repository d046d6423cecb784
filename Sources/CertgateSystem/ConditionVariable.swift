import Glibc
import Synchronization

/// A condition variable for waiting threads (Foundation's NSCondition would bring all of
/// Foundation into the server).
public final class ConditionVariable: @unchecked Sendable {
    // @unchecked: the pthread objects are used only through their thread-safe API.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    /// Counts broadcasts, so a waiter that read it before checking its state cannot miss one.
    private nonisolated(unsafe) var broadcasts: UInt64 = 0

    public init() {
        pthread_mutex_init(mutex, nil)
        // Timed waits count on the monotonic clock: a wall clock stepped by NTP or by hand
        // neither cuts a sleep short nor stretches it.
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        condition.deallocate()
    }

    /// Read before checking the state a broadcast would change; see ``wait(unlessChangedSince:seconds:)``.
    public var generation: UInt64 {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return broadcasts
    }

    /// Waits up to `seconds` unless there was a broadcast after `generation` was read.
    public func wait(unlessChangedSince generation: UInt64, seconds: Double) {
        var deadline = timespec()
        clock_gettime(CLOCK_MONOTONIC, &deadline)
        let nanos = Int(seconds * 1e9) + deadline.tv_nsec
        deadline.tv_sec += nanos / 1_000_000_000
        deadline.tv_nsec = nanos % 1_000_000_000
        pthread_mutex_lock(mutex)
        while broadcasts == generation {
            if pthread_cond_timedwait(condition, mutex, &deadline) == ETIMEDOUT { break }
        }
        pthread_mutex_unlock(mutex)
    }

    /// Wakes every waiter.
    public func broadcast() {
        pthread_mutex_lock(mutex)
        broadcasts &+= 1
        pthread_cond_broadcast(condition)
        pthread_mutex_unlock(mutex)
    }
}

/// A stop request that background loops sleep on: ``sleep(_:)`` returns at once when
/// ``stop()`` is called, rather than at the loop's next poll.
public final class StopSignal: Sendable {
    private let condition = ConditionVariable()
    private let stopped = Mutex(false)

    public init() {}

    public var isStopped: Bool { stopped.withLock { $0 } }

    /// Stops for good and wakes every sleeper.
    public func stop() {
        stopped.withLock { $0 = true }
        condition.broadcast()
    }

    /// Sleeps up to `seconds`. Returns false, at once, if stopped before or while sleeping.
    @discardableResult
    public func sleep(_ seconds: Double) -> Bool {
        let deadline = monotonicNanoseconds() + UInt64(max(0, seconds) * 1e9)
        while true {
            let generation = condition.generation
            if isStopped { return false }
            let now = monotonicNanoseconds()
            guard now < deadline else { return true }
            condition.wait(unlessChangedSince: generation, seconds: Double(deadline - now) / 1e9)
        }
    }
}
