#if canImport(Glibc)
import Glibc
#endif

/// A value behind a pthread mutex, for state threads share.
///
/// Synchronization.Mutex locks with raw futex calls, which ThreadSanitizer cannot see: under
/// `swift test --sanitize=thread` every access made under it reads as a race, real or not.
/// pthread_mutex is intercepted, so with this lock TSan reports only what is really
/// unsynchronized. Uncontended, both cost about the same.
public final class Locked<Value>: @unchecked Sendable {
    // @unchecked: `value` is touched only between pthread_mutex_lock and _unlock. It lives
    // behind a pointer rather than in a stored property: Swift's dynamic exclusivity records
    // of a class property would be reported under TSan as races, mutex or not.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let value = UnsafeMutablePointer<Value>.allocate(capacity: 1)

    public init(_ value: Value) {
        self.value.initialize(to: value)
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        value.deinitialize(count: 1)
        value.deallocate()
    }

    /// Runs `body` with the value, holding the lock. `body` must not take this lock again.
    @inline(__always)
    public func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value.pointee)
    }
}
