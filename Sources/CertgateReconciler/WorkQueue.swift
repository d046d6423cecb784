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
/// the worker is done (never two workers on one key); adding is immediate, and only a key
/// whose reconcile failed waits, for its rate-limited backoff; keys can also be added after
/// a delay (renewals), and delayed keys wait in a heap ordered by when they are due; nothing
/// added is lost before ``shutDown()``.
public final class WorkQueue: Sendable {
    private struct State {
        /// Keys ready now, in order; `head` is the next one (the array is compacted as it drains).
        var ready: [String] = []
        var head = 0
        var queued: Set<String> = []
        var processing: Set<String> = []
        /// Added while processing: queued again on done.
        var dirty: Set<String> = []
        /// When each delayed key is due (monotonic seconds): the earliest time asked for.
        var due: [String: Double] = [:]
        /// The delayed keys by due time; an entry whose time no longer matches `due` is stale
        /// (the key was added sooner, or at once) and is skipped when it comes up.
        var delayed = DueHeap()
        var limiter: RetryRateLimiter
        var shuttingDown = false

        var readyCount: Int { ready.count - head }

        mutating func enqueue(_ key: String) {
            due[key] = nil
            if processing.contains(key) {
                dirty.insert(key)
            } else if queued.insert(key).inserted {
                ready.append(key)
            }
        }

        mutating func dequeue() -> String? {
            guard head < ready.count else { return nil }
            let key = ready[head]
            head += 1
            if head > 1024 && head * 2 > ready.count {
                ready.removeFirst(head)
                head = 0
            }
            return key
        }

        /// Moves the delayed keys due by `now` to the ready queue; returns when the next is due.
        mutating func promote(now: Double) -> Double? {
            while let top = delayed.top {
                guard due[top.key] == top.time else {
                    delayed.pop()  // stale
                    continue
                }
                guard top.time <= now else { return top.time }
                delayed.pop()
                enqueue(top.key)
            }
            return nil
        }
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
            state.enqueue(key)
        }
        signal.broadcast()
    }

    /// Queues every key now, each once: a policy change or a CA rotation, which concerns
    /// every Pki at once and is not a failure to back off from.
    public func addAll<Keys: Sequence<String>>(_ keys: Keys) {
        state.withLock { state in
            guard !state.shuttingDown else { return }
            for key in keys { state.enqueue(key) }
        }
        signal.broadcast()
    }

    /// Queues `key` after `seconds`; an earlier pending time for it wins.
    public func add(_ key: String, after seconds: Double) {
        guard seconds > 0 else { return add(key) }
        let time = clock() + seconds
        state.withLock { state in
            guard !state.shuttingDown, state.due[key].map({ time < $0 }) ?? true else { return }
            state.due[key] = time
            state.delayed.push(time: time, key: key)
        }
        signal.broadcast()
    }

    /// Queues `key` after its rate-limited retry delay (its reconcile failed).
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
                let nextDue = state.promote(now: now)
                // Shut down: what is still queued is dropped (the next leader lists anyway).
                if state.shuttingDown { return (nil, nil) }
                if let key = state.dequeue() {
                    state.queued.remove(key)
                    state.processing.insert(key)
                    return (key, nil)
                }
                return (nil, nextDue.map { max(0.001, $0 - now) } ?? 1)
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
                state.ready.append(key)
            }
        }
        signal.broadcast()
    }

    /// Stops accepting keys and drops those queued or waiting: every worker's next
    /// ``next()`` returns nil. Keys being worked on are finished by their workers.
    public func shutDown() {
        state.withLock { state in
            state.shuttingDown = true
            state.ready.removeAll()
            state.head = 0
            state.queued.removeAll()
            state.due.removeAll()
            state.delayed = DueHeap()
            state.dirty.removeAll()
        }
        signal.broadcast()
    }

    /// Keys queued now (not delayed, not in progress).
    public var count: Int { state.withLock { $0.readyCount } }

    /// Keys waiting for a later time (renewals, retries).
    public var delayedCount: Int { state.withLock { $0.due.count } }

    /// Keys a worker has taken and not yet marked done.
    public var inProgress: Int { state.withLock { $0.processing.count } }
}

/// A binary min-heap of (due time, key).
struct DueHeap {
    private var entries: [(time: Double, key: String)] = []

    var top: (time: Double, key: String)? { entries.first }
    var count: Int { entries.count }

    mutating func push(time: Double, key: String) {
        entries.append((time, key))
        var child = entries.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard entries[child].time < entries[parent].time else { break }
            entries.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() {
        guard !entries.isEmpty else { return }
        entries.swapAt(0, entries.count - 1)
        entries.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < entries.count && entries[left].time < entries[smallest].time { smallest = left }
            if right < entries.count && entries[right].time < entries[smallest].time { smallest = right }
            guard smallest != parent else { return }
            entries.swapAt(parent, smallest)
            parent = smallest
        }
    }
}
