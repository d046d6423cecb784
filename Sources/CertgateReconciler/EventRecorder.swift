import CertgatePKI
import CertgateSystem
import CertgateLocking
import CertgateJSON
import CertgateKube
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Normal or Warning, as `kubectl describe` shows them.
public enum EventType: String, Sendable {
    case normal = "Normal"
    case warning = "Warning"
}

/// Writes core/v1 Events the way client-go's recorder does, so `kubectl describe` shows
/// "Warning  InvalidSpec  1m (x24 over 1d)  certgate  ...":
///
/// - the same event again (same object, type, reason and message) patches `count` and
///   `lastTimestamp` of the Event already written instead of creating another;
/// - each object gets a burst of 25 writes, then one per 5 minutes (client-go's spam filter);
/// - involvedObject carries apiVersion, kind, namespace, name and uid (kubectl matches all);
/// - messages are capped at 1 KiB and PEM blocks are never written (no key material).
///
/// Failures to write are returned, not thrown: an Event is never worth failing a reconcile.
/// An asynchronous recorder (what `serve` runs) queues Events for threads of their own, as
/// client-go's broadcaster does, so a slow API server delays Events and not reconciles; past
/// ``queueCapacity`` waiting, newer ones are dropped and counted. (Two identical Events
/// written at the same moment by two senders may be written as two, not counted as one.)
public final class EventRecorder: Sendable {
    private struct Written {
        var namespace: String
        var name: String
        var count: Int
        var firstTimestamp: String
    }

    private struct Bucket {
        var tokens: Double
        var updated: Double
    }

    private let client: KubeClient
    private let component: String
    private let clock: @Sendable () -> Double
    private let burst: Double
    private let refillSeconds: Double
    private let written = Locked(BoundedMap<Written>(capacity: EventRecorder.cacheCapacity))
    private let buckets = Locked(BoundedMap<Bucket>(capacity: EventRecorder.cacheCapacity))
    /// client-go keeps 4,096 entries of each cache: older events and objects are forgotten.
    static let cacheCapacity = 4096
    /// client-go's broadcaster queues 1,000 events.
    public static let queueCapacity = 1000

    private struct Pending {
        let object: ObjectReference
        let type: EventType
        let reason: String
        let message: String
        let time: Double
    }

    private struct Queue {
        var pending: [Pending] = []
        /// Events taken from `pending` and not yet written.
        var writing = 0
        var senderStarted = false
        var stopped = false
        var dropped = 0
    }

    private let asynchronous: Bool
    /// Added to each Event's name: unique per recorder, started at random across replicas.
    private let sequence = Atomic<UInt64>(UInt64.random(in: 0..<(1 << 20)))
    private let queue = Locked(Queue())
    private let queueChanged = ConditionVariable()
    private let senders = Locked<[JoinableThread]>([])
    private let senderCount: Int

    /// - Parameters:
    ///   - asynchronous: queue Events for a thread of their own instead of writing them in
    ///     the caller's.
    ///   - senders: threads writing queued Events at once (asynchronous only): one keeps up with
    ///     about one write's round trip, and a first issuance of thousands of Pkis makes Events
    ///     faster than that.
    ///   - clock: wall-clock seconds since 1970 (replaceable in tests).
    public init(client: KubeClient, component: String = "certgate", burst: Int = 25, refillSeconds: Double = 300,
                asynchronous: Bool = false, senders: Int = 4, clock: @escaping @Sendable () -> Double = { Double(time(nil)) }) {
        senderCount = max(1, senders)
        self.client = client
        self.component = component
        self.clock = clock
        self.burst = Double(burst)
        self.refillSeconds = refillSeconds
        self.asynchronous = asynchronous
    }

    /// Records an event about `object`. Returns the error if the API refused it, and nil
    /// when it was written, queued, or deliberately dropped by the spam filter.
    @discardableResult
    public func record(_ object: ObjectReference, _ type: EventType, reason: String, message: String) -> Error? {
        let pending = Pending(object: object, type: type, reason: reason, message: message, time: clock())
        guard asynchronous else { return write(pending) }
        let startSender = queue.withLock { queue -> Bool in
            guard !queue.stopped, queue.pending.count < EventRecorder.queueCapacity else {
                queue.dropped += 1
                return false
            }
            queue.pending.append(pending)
            defer { queue.senderStarted = true }
            return !queue.senderStarted
        }
        if startSender {
            for index in 0..<senderCount {
                if let thread = try? JoinableThread(name: "event-sender-\(index)", { [self] in send() }) {
                    senders.withLock { $0.append(thread) }
                }
            }
        }
        queueChanged.broadcast()
        return nil
    }

    /// Events dropped because the queue was full.
    public var droppedCount: Int { queue.withLock { $0.dropped } }

    /// Waits until every queued Event has been written, up to `seconds`; false if some
    /// are still waiting then.
    @discardableResult
    public func flush(seconds: Double = 10) -> Bool {
        let deadline = monotonicNanoseconds() + UInt64(max(0, seconds) * 1e9)
        while true {
            let generation = queueChanged.generation
            if queue.withLock({ $0.pending.isEmpty && $0.writing == 0 }) { return true }
            let now = monotonicNanoseconds()
            if now >= deadline { return false }
            let left = Double(deadline - now) / 1e9
            queueChanged.wait(unlessChangedSince: generation, seconds: min(left, 0.1))
        }
    }

    /// Sends what is queued for up to `flushSeconds`, then stops the sender and joins it;
    /// later Events are dropped. Returns whether everything queued was sent.
    @discardableResult
    public func shutDown(flushSeconds: Double) -> Bool {
        let flushed = flush(seconds: flushSeconds)
        queue.withLock { queue in
            queue.stopped = true
            queue.dropped += queue.pending.count
            queue.pending.removeAll()
        }
        queueChanged.broadcast()
        for thread in senders.withLock({ $0 }) { thread.join() }
        return flushed
    }

    /// The sender thread: writes queued Events one at a time until shut down.
    private func send() {
        while true {
            let generation = queueChanged.generation
            let (next, stopped) = queue.withLock { queue -> (Pending?, Bool) in
                guard !queue.stopped else { return (nil, true) }
                guard !queue.pending.isEmpty else { return (nil, false) }
                queue.writing += 1
                return (queue.pending.removeFirst(), false)
            }
            if stopped { return }
            guard let next else {
                queueChanged.wait(unlessChangedSince: generation, seconds: 60)
                continue
            }
            _ = write(next)  // a failure to write an Event is never worth more than the Event
            queue.withLock { $0.writing -= 1 }
            queueChanged.broadcast()
        }
    }

    private func write(_ pending: Pending) -> Error? {
        let (object, type, reason, message, now) = (pending.object, pending.type, pending.reason, pending.message, pending.time)
        let objectKey = [object.apiVersion, object.kind, object.namespace, object.name, object.uid].map { $0 ?? "" }.joined(separator: "/")
        guard takeToken(objectKey, now: now) else { return nil }
        let text = EventRecorder.sanitized(message)
        let eventKey = [objectKey, type.rawValue, reason, text].joined(separator: "\u{0}")
        let timestamp = formatUTC(Int(now), "%Y-%m-%dT%H:%M:%SZ")
        do {
            if let previous = written.withLock({ $0.get(eventKey) }) {
                do {
                    let patch = #"{"count":\#(previous.count + 1),"lastTimestamp":"\#(timestamp)"}"#
                    _ = try client.mergePatch(.events, namespace: previous.namespace, name: previous.name, patch: Array(patch.utf8), as: Event.self)
                    written.withLock { $0.set(eventKey, Written(namespace: previous.namespace, name: previous.name, count: previous.count + 1,
                                                                firstTimestamp: previous.firstTimestamp)) }
                    return nil
                } catch let status as APIStatus where status.isNotFound {
                    // The Event expired (the API server keeps them an hour): start a new one.
                    written.withLock { $0.remove(eventKey) }
                }
            }
            let namespace = object.namespace ?? "default"
            // client-go names Events by the nanosecond; the clock here may tick in seconds, so a
            // counter keeps two Events about one object in one second from colliding.
            let name = "\(object.name ?? "object").\(String(UInt64(now * 1e9) &+ sequence.wrappingAdd(1, ordering: .relaxed).oldValue, radix: 16))"
            let event = Event(metadata: ObjectMeta(name: name, namespace: namespace), involvedObject: object, reason: reason,
                              message: text, type: type.rawValue, count: 1, firstTimestamp: timestamp, lastTimestamp: timestamp,
                              component: component)
            _ = try client.create(.events, namespace: namespace, event)
            written.withLock { $0.set(eventKey, Written(namespace: namespace, name: name, count: 1, firstTimestamp: timestamp)) }
            return nil
        } catch {
            return error
        }
    }

    /// Token bucket per object: `burst` writes, then one per `refillSeconds`.
    private func takeToken(_ key: String, now: Double) -> Bool {
        buckets.withLock { buckets in
            var bucket = buckets.get(key) ?? Bucket(tokens: burst, updated: now)
            bucket.tokens = min(burst, bucket.tokens + (now - bucket.updated) / refillSeconds)
            bucket.updated = now
            guard bucket.tokens >= 1 else {
                buckets.set(key, bucket)
                return false
            }
            bucket.tokens -= 1
            buckets.set(key, bucket)
            return true
        }
    }

    /// At most 1 KiB, and no PEM block (a certificate or, worse, a key) ever reaches an Event.
    static func sanitized(_ message: String) -> String {
        var text = message
        if let begin = text.rangeOfFirst("-----BEGIN") {
            text = String(text[..<begin.lowerBound]) + "[PEM data removed]"
        }
        if text.utf8.count > 1024 {
            var cut = text.utf8.prefix(1021)
            while String(cut) == nil { cut = cut.dropLast() }
            text = String(cut)! + "..."
        }
        return text
    }
}

/// A map that forgets its least recently used entries past `capacity`.
struct BoundedMap<Value> {
    let capacity: Int
    private var entries: [String: (value: Value, used: UInt64)] = [:]
    private var clock: UInt64 = 0

    init(capacity: Int) { self.capacity = capacity }

    var count: Int { entries.count }

    mutating func get(_ key: String) -> Value? {
        guard let entry = entries[key] else { return nil }
        clock += 1
        entries[key] = (entry.value, clock)
        return entry.value
    }

    mutating func set(_ key: String, _ value: Value) {
        clock += 1
        entries[key] = (value, clock)
        if entries.count > capacity {
            // Evict the oldest tenth at once, so eviction stays rare and cheap.
            let cut = entries.values.map(\.used).sorted()[entries.count / 10]
            entries = entries.filter { $0.value.used > cut }
        }
    }

    mutating func remove(_ key: String) { entries[key] = nil }
}
