import CertgateSystem
import CertgateLocking
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// When a failed item may be tried again, as client-go's default controller rate limiter
/// decides: the later of a per-item exponential backoff (5 ms doubling up to 1000 s) and an
/// overall token bucket (10 per second, bursts of 100), so one failing object backs off
/// alone and a storm of failures cannot flood the API server.
public struct RetryRateLimiter: Sendable {
    public var baseDelay: Double = 0.005
    public var maxDelay: Double = 1000
    public var ratePerSecond: Double = 10
    public var burst: Double = 100

    private var failures: [String: Int] = [:]
    private var tokens: Double
    private var lastRefill: Double?

    public init(baseDelay: Double = 0.005, maxDelay: Double = 1000, ratePerSecond: Double = 10, burst: Double = 100) {
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
        self.ratePerSecond = ratePerSecond
        self.burst = burst
        tokens = burst
    }

    /// The delay before `key` is tried again, counting this failure; `now` in seconds.
    public mutating func delay(for key: String, now: Double) -> Double {
        let count = failures[key, default: 0]
        failures[key] = count + 1
        let backoff = min(maxDelay, baseDelay * pow(2, Double(min(count, 62))))

        // Token bucket: refill since the last call, then take one token (going negative
        // means waiting until the bucket has refilled that far).
        if let lastRefill { tokens = min(burst, tokens + (now - lastRefill) * ratePerSecond) }
        lastRefill = now
        tokens -= 1
        let bucketWait = tokens >= 0 ? 0 : -tokens / ratePerSecond
        return max(backoff, bucketWait)
    }

    /// Forgets `key`'s failures (it succeeded).
    public mutating func forget(_ key: String) {
        failures[key] = nil
    }

    public func failureCount(_ key: String) -> Int { failures[key, default: 0] }
}

/// A queue of object keys for reconcile workers, with client-go's workqueue semantics: a
/// key is queued at most once; a key added while a worker holds it is queued again when
/// the worker is done (never two workers on one key); keys can be added after a delay
/// (renewals) or after a rate-limited delay (failures); nothing added is lost before
/// ``shutDown()``.
public final class WorkQueue: Sendable {
    private struct State {
        var queue: [String] = []
        var queued: Set<String> = []
        var processing: Set<String> = []
        /// Added while processing: queued again on done.
        var dirty: Set<String> = []
        /// Delayed keys and when they become ready (monotonic seconds).
        var waiting: [String: Double] = [:]
        var limiter: RetryRateLimiter
        var shuttingDown = false
    }

    private let state: Locked<State>
    private let signal = ConditionVariable()
    /// Monotonic seconds; replaceable in tests.
    private let clock: @Sendable () -> Double

    public init(rateLimiter: RetryRateLimiter = RetryRateLimiter(),
                clock: @escaping @Sendable () -> Double = { Double(monotonicNanoseconds()) / 1e9 }) {
        state = Locked(State(limiter: rateLimiter))
        self.clock = clock
    }

    /// Queues `key` now (once; again after the current worker if one holds it).
    public func add(_ key: String) {
        state.withLock { state in
            guard !state.shuttingDown else { return }
            state.waiting[key] = nil
            if state.processing.contains(key) {
                state.dirty.insert(key)
            } else if state.queued.insert(key).inserted {
                state.queue.append(key)
            }
        }
        signal.broadcast()
    }

    /// Queues `key` after `seconds`; an earlier pending time for it wins.
    public func add(_ key: String, after seconds: Double) {
        guard seconds > 0 else { return add(key) }
        let ready = clock() + seconds
        state.withLock { state in
            guard !state.shuttingDown else { return }
            state.waiting[key] = min(state.waiting[key] ?? .infinity, ready)
        }
        signal.broadcast()
    }

    /// Queues `key` after its rate-limited retry delay (it failed).
    public func addRateLimited(_ key: String) {
        let delay = state.withLock { $0.limiter.delay(for: key, now: clock()) }
        add(key, after: delay)
    }

    /// Resets `key`'s backoff (it succeeded).
    public func forget(_ key: String) {
        state.withLock { $0.limiter.forget(key) }
    }

    public func failureCount(_ key: String) -> Int {
        state.withLock { $0.limiter.failureCount(key) }
    }

    /// The next key to work on, waiting until one is ready; nil once shut down.
    /// The caller must call ``done(_:)`` with it.
    public func next() -> String? {
        while true {
            let generation = signal.generation
            let (key, wait) = state.withLock { state -> (String?, Double?) in
                let now = clock()
                for (key, ready) in state.waiting where ready <= now {
                    state.waiting[key] = nil
                    if state.processing.contains(key) {
                        state.dirty.insert(key)
                    } else if state.queued.insert(key).inserted {
                        state.queue.append(key)
                    }
                }
                // Shut down: what is still queued is dropped (the next leader lists anyway).
                if state.shuttingDown { return (nil, nil) }
                if !state.queue.isEmpty {
                    let key = state.queue.removeFirst()
                    state.queued.remove(key)
                    state.processing.insert(key)
                    return (key, nil)
                }
                let soonest = state.waiting.values.min().map { max(0.001, $0 - now) }
                return (nil, soonest ?? 1)
            }
            if let key { return key }
            guard let wait else { return nil }
            signal.wait(unlessChangedSince: generation, seconds: min(wait, 1))
        }
    }

    /// The worker finished `key`; if it was added meanwhile it is queued again.
    public func done(_ key: String) {
        state.withLock { state in
            state.processing.remove(key)
            if state.dirty.remove(key) != nil, !state.shuttingDown, state.queued.insert(key).inserted {
                state.queue.append(key)
            }
        }
        signal.broadcast()
    }

    /// Stops accepting keys and drops those queued or waiting: every worker's next
    /// ``next()`` returns nil. Keys being worked on are finished by their workers.
    public func shutDown() {
        state.withLock { state in
            state.shuttingDown = true
            state.queue.removeAll()
            state.queued.removeAll()
            state.waiting.removeAll()
            state.dirty.removeAll()
        }
        signal.broadcast()
    }

    /// Keys queued now (not delayed, not in progress).
    public var count: Int { state.withLock { $0.queue.count } }

    /// Keys a worker has taken and not yet marked done.
    public var inProgress: Int { state.withLock { $0.processing.count } }
}
