import CertgatePKI
import CertgateSystem
import CertgateJSON
import CertgateLocking
import CertgateHTTP
import CertgateNet
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// An object with metadata, which is all an informer needs to cache it.
public protocol KubeObject: Codable, Sendable {
    var metadata: ObjectMeta { get }
}

/// Any object reduced to its metadata, as the API server sends it when asked for
/// PartialObjectMetadata: an informer of these caches names, labels and owners without the
/// data (a Secret informer need not hold every certificate and key).
public struct PartialObjectMetadata: KubeObject, Equatable {
    public var metadata: ObjectMeta

    public init(metadata: ObjectMeta) { self.metadata = metadata }
}

extension Pki: KubeObject {}
extension Secret: KubeObject {}
extension Pod: KubeObject {}
extension Lease: KubeObject {}
extension Event: KubeObject {}

/// What an informer tells its owner. Called one at a time, never concurrently.
public struct InformerHandlers<Object: KubeObject>: Sendable {
    public var onAdd: @Sendable (Object) -> Void
    public var onUpdate: @Sendable (_ old: Object, _ new: Object) -> Void
    public var onDelete: @Sendable (Object) -> Void

    public init(onAdd: @escaping @Sendable (Object) -> Void = { _ in },
                onUpdate: @escaping @Sendable (Object, Object) -> Void = { _, _ in },
                onDelete: @escaping @Sendable (Object) -> Void = { _ in }) {
        self.onAdd = onAdd
        self.onUpdate = onUpdate
        self.onDelete = onDelete
    }
}

/// Keeps a local copy of one resource (in one namespace, or all) current, as client-go's
/// shared informer does: list, then watch from the list's resourceVersion; a watch that ends
/// is started again from the last resourceVersion seen (no event lost or repeated), a 410
/// Gone lists again (and tells the handlers what changed meanwhile), an unreachable server
/// is retried with exponential backoff and jitter, and every `resyncInterval` each cached
/// object is handed to onUpdate again (on a timer of its own).
public final class Informer<Object: KubeObject>: @unchecked Sendable {
    // @unchecked: `cache` and `synced` are behind `state`; the rest is immutable or Sendable.
    private let client: KubeClient
    private let resource: Resource
    private let namespace: String?
    private let options: ListOptions
    private let handlers: InformerHandlers<Object>
    private let resyncInterval: Double
    private let state = Locked(CacheState<Object>())
    /// The index keys of an object (for pods: the Secrets each uses), if the cache keeps an index.
    private let indexKeys: (@Sendable (Object) -> [String])?
    /// Applied to each object as it arrives, before it is cached or handed on (client-go's
    /// SetTransform): drops what the owner never reads, which a cache of thousands would hold.
    private let transform: (@Sendable (Object) -> Object)?
    private let stopSignal = StopSignal()
    private let cancellation = Locked<StreamCancellation?>(nil)
    /// The list-and-watch and resync threads, joined by ``stop()``.
    private let threads = Locked<[JoinableThread]>([])
    /// How many times the informer listed (for tests and logs).
    public var listCount: Int { lists.load(ordering: .relaxed) }
    private let lists = Atomic<Int>(0)
    /// The watch's timeoutSeconds is drawn from here (client-go: 5 to 10 minutes), so that
    /// many watchers do not reconnect together.
    private let watchTimeouts: ClosedRange<Int>
    private let watchSilenceGrace: Double
    /// Told of every failed list or watch (a watch that ended at once included).
    private let failures: FailureReporter?
    /// What this informer follows, as its failures name it: "pkis in app1".
    private let scope: String
    /// Handlers are called under this lock: the watch and the resync timer both call them.
    private let delivery = Locked<Void>(())

    public init(client: KubeClient, resource: Resource, namespace: String?, options: ListOptions = ListOptions(),
                resyncInterval: Double = 600, watchTimeouts: ClosedRange<Int> = 300...600,
                watchSilenceGrace: Double = KubeClient.watchSilenceGraceSeconds, failures: FailureReporter? = nil,
                indexKeys: (@Sendable (Object) -> [String])? = nil, transform: (@Sendable (Object) -> Object)? = nil,
                handlers: InformerHandlers<Object>) {
        self.indexKeys = indexKeys
        self.transform = transform
        self.client = client
        self.failures = failures
        self.watchTimeouts = watchTimeouts
        self.watchSilenceGrace = watchSilenceGrace
        self.resource = resource
        self.namespace = namespace
        scope = "\(resource.plural) in \(namespace ?? "all namespaces")"
        self.options = options
        self.handlers = handlers
        self.resyncInterval = resyncInterval
    }

    /// Starts listing and watching on a thread of its own, and the resync timer on another.
    public func start() throws {
        let watching = try JoinableThread(name: "informer-\(resource.plural)") { [self] in run() }
        threads.withLock { $0.append(watching) }
        let resyncing = try JoinableThread(name: "resync-\(resource.plural)") { [self] in resyncPeriodically() }
        threads.withLock { $0.append(resyncing) }
    }

    /// Every `resyncInterval`, hands each cached object to onUpdate again, so an owner that
    /// missed acting on something (a failed reconcile) gets another chance.
    private func resyncPeriodically() {
        while stopSignal.sleep(resyncInterval) {
            deliver { for object in objects.sorted(by: { ($0.metadata.name ?? "") < ($1.metadata.name ?? "") }) { handlers.onUpdate(object, object) } }
        }
    }

    private func deliver(_ body: () -> Void) {
        delivery.withLock { _ in
            if !isStopped { body() }
        }
    }

    /// Stops the watch at once and returns once its threads have ended; handlers are not
    /// called afterwards. Not to be called from a handler.
    public func stop() {
        stopSignal.stop()
        cancellation.withLock { $0?.cancel() }
        for thread in threads.withLock({ threads in defer { threads.removeAll() }; return threads }) { thread.join() }
    }

    /// True once the first list has filled the cache.
    public var hasSynced: Bool { state.withLock { $0.synced } }

    public func get(namespace: String?, name: String) -> Object? {
        state.withLock { $0.cache[Informer.key(namespace, name)] }
    }

    public var objects: [Object] { state.withLock { Array($0.cache.values) } }

    /// The cached objects whose index keys include `key` (an informer made with `indexKeys`).
    public func objects(indexedBy key: String) -> [Object] {
        state.withLock { state in (state.index[key] ?? []).compactMap { state.cache[$0] } }
    }

    /// Puts what the caller itself just wrote (the API server's answer) into the cache, so
    /// that its next read sees it before the watch brings it; when the watch does, the event
    /// carries nothing new and is not handed to the handlers: a write of the owner's own does
    /// not wake it again. An object older than the cached one is ignored.
    public func assume(_ written: Object) {
        let object = transform?(written) ?? written
        let key = Informer.key(object.metadata.namespace, object.metadata.name ?? "")
        state.withLock { state in
            if let cached = state.cache[key], !isNewer(object, than: cached) { return }
            state.store(key, object, indexKeys: indexKeys)
        }
    }

    /// Removes what the caller itself just deleted, as ``assume(_:)`` adds what it wrote.
    public func assumeDeleted(namespace: String?, name: String) {
        _ = state.withLock { $0.store(Informer.key(namespace, name), nil, indexKeys: indexKeys) }
    }

    private var isStopped: Bool { stopSignal.isStopped }

    /// Lists, then watches from the list's resourceVersion until the watch fails; then waits
    /// and lists again. Every failure, a 410 and a watch that ends at once included, goes
    /// through the same backoff, as client-go's reflector does: a server that answers every
    /// watch with nothing can never make the informer list in a loop.
    private func run() {
        var backoff = RelistBackoff()
        while !isStopped {
            do {
                var version = try relist()
                while !isStopped {
                    let watched = try watch(from: version)
                    version = watched.version
                    if watched.events > 0 || watched.seconds >= RelistBackoff.healthyWatchSeconds {
                        backoff.reset()
                        failures?.recovered("informer \(scope)")
                    }
                    if watched.events == 0 && watched.seconds < RelistBackoff.shortWatchSeconds && !isStopped {
                        throw ShortWatch(seconds: watched.seconds)
                    }
                }
            } catch {
                guard !isStopped else { break }
                failures?.report("informer \(scope)", "cannot list or watch \(scope); the cache may be stale until it can",
                                 error: error, metadata: ["resource": "\(resource.plural)", "namespace": "\(namespace ?? "")"])
                stopSignal.sleep(backoff.next())
            }
        }
    }

    /// Lists every page and brings the cache (and the handlers) up to date. Returns the
    /// resourceVersion to watch from.
    private func relist() throws -> String {
        var items: [Object] = []
        var page = options
        page.limit = 500
        var version = ""
        repeat {
            let list = try client.list(resource, namespace: namespace, options: page, of: Object.self)
            items += list.items
            version = list.metadata.resourceVersion ?? version
            // The last page of a custom-resource list says "continue":"" rather than leaving
            // the key out; client-go takes an empty token as the end too.
            page.continueToken = list.metadata.continue.flatMap { $0.isEmpty ? nil : $0 }
        } while page.continueToken != nil
        lists.wrappingAdd(1, ordering: .relaxed)
        var fresh: [String: Object] = [:]
        for item in items { fresh[Informer.key(item.metadata.namespace, item.metadata.name ?? "")] = transform?(item) ?? item }
        let old = state.withLock { state -> [String: Object] in
            let old = state.cache
            state.replace(with: fresh, indexKeys: indexKeys)
            state.synced = true
            return old
        }
        deliver {
            for (key, object) in fresh.sorted(by: { $0.key < $1.key }) {
                if let before = old[key] {
                    if before.metadata.resourceVersion != object.metadata.resourceVersion { handlers.onUpdate(before, object) }
                } else {
                    handlers.onAdd(object)
                }
            }
            for (key, object) in old.sorted(by: { $0.key < $1.key }) where fresh[key] == nil { handlers.onDelete(object) }
        }
        return version
    }

    /// Watches until the server ends the stream; returns the last resourceVersion seen, how
    /// many events came, and how long the watch lasted.
    private func watch(from start: String) throws -> (version: String, events: Int, seconds: Double) {
        var version = start
        var events = 0
        let started = monotonicNanoseconds()
        let handle = StreamCancellation()
        cancellation.withLock { $0 = handle }
        if isStopped { return (version, 0, 0) }
        // client-go picks a random timeout so that many watchers do not reconnect together.
        try client.watch(resource, namespace: namespace, options: ListOptions(labelSelector: options.labelSelector,
                                                                              fieldSelector: options.fieldSelector, resourceVersion: version),
                         timeoutSeconds: Int.random(in: watchTimeouts), silenceGrace: watchSilenceGrace,
                         of: Object.self, cancellation: handle) { event in
            events += 1
            switch event {
            case .added(let received), .modified(let received):
                let object = transform?(received) ?? received
                let key = Informer.key(object.metadata.namespace, object.metadata.name ?? "")
                let (before, isNew) = state.withLock { state -> (Object?, Bool) in
                    let before = state.cache[key]
                    // Already cached: the owner's own write, assumed when it was made (or
                    // one older than it, which that write superseded).
                    if let before, !isNewer(object, than: before) { return (before, false) }
                    state.store(key, object, indexKeys: indexKeys)
                    return (before, true)
                }
                if isNew { deliver { if let before { handlers.onUpdate(before, object) } else { handlers.onAdd(object) } } }
                version = object.metadata.resourceVersion ?? version
            case .deleted(let object):
                _ = state.withLock { $0.store(Informer.key(object.metadata.namespace, object.metadata.name ?? ""), nil, indexKeys: indexKeys) }
                deliver { handlers.onDelete(object) }
                version = object.metadata.resourceVersion ?? version
            case .bookmark(let resourceVersion):
                version = resourceVersion
            case .error(let status):
                throw status
            }
            return !isStopped
        }
        return (version, events, Double(monotonicNanoseconds() &- started) / 1e9)
    }

    private static func key(_ namespace: String?, _ name: String) -> String {
        "\(namespace ?? "")/\(name)"
    }
}

/// Whether `object` is a later version than `cached`. resourceVersions are etcd revisions
/// (client-go's mutation cache compares them as integers too); one that is not a number
/// counts as newer unless it is the same.
private func isNewer<Object: KubeObject>(_ object: Object, than cached: Object) -> Bool {
    let new = object.metadata.resourceVersion
    let old = cached.metadata.resourceVersion
    if new == old { return false }
    guard let newNumber = new.flatMap(UInt64.init), let oldNumber = old.flatMap(UInt64.init) else { return true }
    return newNumber > oldNumber
}

/// An informer's cache: the objects by "namespace/name", and an optional index from keys of
/// the owner's choosing to the objects that have them.
struct CacheState<Object: KubeObject> {
    var cache: [String: Object] = [:]
    var synced = false
    var index: [String: Set<String>] = [:]

    /// Stores `object` under `key` (nil removes it), keeping the index in step.
    mutating func store(_ key: String, _ object: Object?, indexKeys: ((Object) -> [String])?) {
        let previous = object.map { cache.updateValue($0, forKey: key) } ?? cache.removeValue(forKey: key)
        guard let indexKeys else { return }
        let old = previous.map(indexKeys) ?? []
        let new = object.map(indexKeys) ?? []
        guard old != new else { return }
        for indexKey in old {
            index[indexKey]?.remove(key)
            if index[indexKey]?.isEmpty == true { index[indexKey] = nil }
        }
        for indexKey in new { index[indexKey, default: []].insert(key) }
    }

    mutating func replace(with fresh: [String: Object], indexKeys: ((Object) -> [String])?) {
        cache = fresh
        index = [:]
        guard let indexKeys else { return }
        for (key, object) in fresh {
            for indexKey in indexKeys(object) { index[indexKey, default: []].insert(key) }
        }
    }
}

/// A watch the server ended within a second without an event: client-go calls it a "very
/// short watch" and backs off before listing again.
struct ShortWatch: Error, CustomStringConvertible {
    let seconds: Double
    var description: String { "the watch ended after \(seconds) s without an event" }
}

/// client-go's reflector backoff: 0.8 s, doubling to 30 s, with jitter up to the delay
/// itself; back to the start only once a watch has delivered events or lasted a while.
struct RelistBackoff {
    static let initial = 0.8
    static let maximum = 30.0
    /// A watch that ends sooner than this without an event counts as a failure.
    static let shortWatchSeconds = 1.0
    /// A watch that lasted this long was healthy, events or not.
    static let healthyWatchSeconds = 60.0

    private var delay = RelistBackoff.initial

    /// The next wait; each is about twice the last, up to the maximum.
    mutating func next() -> Double {
        let wait = delay * (1 + Double.random(in: 0..<1))
        delay = min(delay * 2, RelistBackoff.maximum)
        return min(wait, RelistBackoff.maximum)
    }

    mutating func reset() {
        delay = RelistBackoff.initial
    }
}
