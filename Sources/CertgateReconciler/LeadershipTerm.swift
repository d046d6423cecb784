import CertgateKube
import CertgateLocking
import CertgatePKI
import CertgateSystem
import Synchronization

/// How a term runs: the parts that do not change from one term to the next.
public struct TermConfiguration: Sendable {
    public var workers: Int
    public var resyncInterval: Double
    public var rateLimiter: RetryRateLimiter
    /// The name of the trust bundle ConfigMap to keep in each namespace with a Pki (nil: none).
    public var trustBundle: String?
    /// Write Events from a thread of their own (false in tests that read them at once).
    public var asynchronousEvents: Bool

    public init(workers: Int = 4, resyncInterval: Double = 600, rateLimiter: RetryRateLimiter = RetryRateLimiter(),
                trustBundle: String? = nil, asynchronousEvents: Bool = true) {
        self.workers = max(1, workers)
        self.resyncInterval = resyncInterval
        self.rateLimiter = rateLimiter
        self.trustBundle = trustBundle
        self.asynchronousEvents = asynchronousEvents
    }
}

/// One term of leadership, as one unit: it starts its caches (informers on Pkis, Secrets and
/// pods), waits until they have listed, creates the missing CAs (--bootstrap-ca) once, then
/// starts its workers; ``stop()`` undoes it in reverse: no write goes out from the first
/// moment, the workers are joined, the informers stopped, and the term's Events sent, so the
/// Lease can be released the moment it returns.
///
/// A Pki is queued when it is added, changed in spec or metadata (not when only its status
/// changed: that is certgate's own write, which the caches recognise), deleted, and on the
/// resync; a Secret it owns queues it when someone else changes or deletes the Secret (so a
/// Secret edited by hand is restored); a change to an issuer's CA Secret, and a policy change
/// (``requeueAll()``), queue every Pki at once.
///
/// With a trust bundle ConfigMap name, each namespace's bundle is a key of the same queue
/// ("bundle:NAMESPACE"), queued when a Pki there comes or goes, when one of its Secrets
/// changes, when an issuer's CA changes, and for every bundle found when the term starts (a
/// namespace whose last Pki went while no term ran).
public final class LeadershipTerm: Sendable {
    private let configuration: TermConfiguration
    private let queue: WorkQueue
    private let reconciler: PkiReconciler
    private let caches: TermCaches
    private let context: ReconcileContext
    private let reconciles = Atomic<Int>(0)
    private let ended = EndedFlag()
    private let stopSignal = StopSignal()
    private let starter = Locked<JoinableThread?>(nil)
    private let workerThreads = Locked<[JoinableThread]>([])
    private let failures: FailureReporter?
    private static let bundlePrefix = "bundle:"

    /// - Parameter isLeading: whether the Lease is still held (a term ends the moment it is not).
    public init(client: KubeClient, reconciler: PkiReconciler, configuration: TermConfiguration = TermConfiguration(),
                failures: FailureReporter? = nil, isLeading: @escaping @Sendable () -> Bool = { true }) {
        self.configuration = configuration
        self.reconciler = reconciler
        self.failures = failures
        let queue = WorkQueue(rateLimiter: configuration.rateLimiter)
        self.queue = queue
        let trustBundle = configuration.trustBundle
        let bundleKey: @Sendable (String?) -> Void = { namespace in
            if trustBundle != nil { queue.add(LeadershipTerm.bundlePrefix + (namespace ?? "")) }
        }
        let enqueue: @Sendable (ObjectMeta) -> Void = {
            queue.add("\($0.namespace ?? "")/\($0.name ?? "")")
            bundleKey($0.namespace)
        }
        let ownerChanged: @Sendable (ObjectMeta) -> Void = { secret in
            if let owner = secret.ownerReferences?.first(where: { $0.controller == true && $0.kind == Pki.typeMeta.kind }) {
                queue.add("\(secret.namespace ?? "")/\(owner.name)")
                bundleKey(secret.namespace)
            }
        }
        let everyPki = Locked<(@Sendable () -> [String])?>(nil)
        let policy = reconciler.policy
        let otherSecretChanged: @Sendable (PartialObjectMetadata) -> Void = { secret in
            ownerChanged(secret.metadata)
            let namespace = secret.metadata.namespace ?? ""
            let name = secret.metadata.name ?? ""
            if policy()?.issuers.values.contains(where: { $0.namespace == namespace && $0.name == name }) == true,
               let keys = everyPki.withLock({ $0 })?() {
                // A CA rotation: every Pki at once, and every bundle that holds the root.
                queue.addAll(keys)
                for namespace in Set(keys.map { $0.prefix { $0 != "/" } }) { bundleKey(String(namespace)) }
            }
        }
        caches = TermCaches(
            client: client, resyncInterval: configuration.resyncInterval, failures: failures,
            pkiHandlers: InformerHandlers(
                onAdd: { enqueue($0.metadata) },
                onUpdate: { old, new in
                    // Only status changed (by another writer: our own writes never get here):
                    // nothing to do. A resync hands the same object twice, which is looked at again.
                    if old.metadata.resourceVersion != new.metadata.resourceVersion,
                       old.metadata.generation == new.metadata.generation,
                       old.metadata.labels == new.metadata.labels, old.metadata.annotations == new.metadata.annotations {
                        return
                    }
                    enqueue(new.metadata)
                },
                onDelete: { enqueue($0.metadata) }),
            managedSecretHandlers: InformerHandlers(onAdd: { ownerChanged($0.metadata) }, onUpdate: { _, new in ownerChanged(new.metadata) },
                                                    onDelete: { ownerChanged($0.metadata) }),
            otherSecretHandlers: InformerHandlers(onAdd: otherSecretChanged, onUpdate: { _, new in otherSecretChanged(new) },
                                                  onDelete: otherSecretChanged))
        let caches = caches
        everyPki.withLock { $0 = { caches.pkiKeys } }
        let ended = self.ended
        let events = EventRecorder(client: client, asynchronous: configuration.asynchronousEvents)
        context = ReconcileContext(client: client, reads: caches, events: events,
                                   isCurrent: { !ended.isSet && isLeading() })
    }

    /// Starts the caches, and on a thread of its own waits for them to list, creates the
    /// missing CAs and starts the workers: the elector that calls this is not held up.
    public func start() throws {
        do {
            try caches.start()
            let thread = try JoinableThread(name: "term-start") { [self] in startWorkersOnceSynced() }
            starter.withLock { $0 = thread }
        } catch {
            stop()
            throw error
        }
    }

    private func startWorkersOnceSynced() {
        while !caches.hasSynced {
            guard stopSignal.sleep(0.02) else { return }
        }
        // Once, before any Pki is looked at: no reconcile races another to create a CA.
        var backoff = 0.5
        while true {
            do {
                try reconciler.bootstrapAuthorities(in: context)
                failures?.recovered("bootstrap")
                break
            } catch is PkiReconciler.TermEnded {
                return
            } catch {
                failures?.report("bootstrap", "creating the missing CA Secrets (--bootstrap-ca) failed; retrying", error: error, metadata: [:])
                guard stopSignal.sleep(backoff) else { return }
                backoff = min(backoff * 2, 30)
            }
        }
        if configuration.trustBundle != nil {
            // Bundles left in namespaces whose last Pki went while no term ran.
            queue.add(LeadershipTerm.bundlePrefix + "*")
        }
        for index in 0..<configuration.workers {
            guard !stopSignal.isStopped else { return }
            do {
                let thread = try JoinableThread(name: "reconcile-\(index)") { [self] in work() }
                workerThreads.withLock { $0.append(thread) }
            } catch {
                failures?.report("workers", "a reconcile worker could not start", error: error, metadata: [:])
            }
        }
    }

    /// Ends the term and returns once nothing of it runs: writes are refused from the first
    /// moment, queued keys are dropped, each worker finishes (or abandons at its next write)
    /// the key it holds and is joined, the informers stop, and the term's Events are sent
    /// (for up to 5 seconds): they are its writes too, and go before the Lease is released.
    /// Returns whether every Event was sent.
    @discardableResult
    public func stop() -> Bool {
        ended.set()
        stopSignal.stop()
        queue.shutDown()
        starter.withLock { $0 }?.join()
        for thread in workerThreads.withLock({ threads in defer { threads.removeAll() }; return threads }) { thread.join() }
        caches.stop()
        // The per-Pki series are the leader's to report: the next leader reports them anew.
        reconciler.metrics?.certificates.removeAll()
        return context.events.shutDown(flushSeconds: 5)
    }

    /// A new policy is in force: its missing CAs are created, and every known Pki is queued
    /// at once (each once, with no backoff) to be judged again.
    public func requeueAll() {
        if caches.hasSynced {
            do {
                try reconciler.bootstrapAuthorities(in: context)
                failures?.recovered("bootstrap")
            } catch {
                // Its Pkis wait with IssuerNotReady, and the next policy change or term tries again.
                failures?.report("bootstrap", "creating the missing CA Secrets (--bootstrap-ca) failed", error: error, metadata: [:])
            }
        }
        queue.addAll(caches.pkiKeys)
    }

    /// True once the informers have listed (for /readyz).
    public var hasSynced: Bool { caches.hasSynced }

    /// Keys waiting now.
    public var queueDepth: Int { queue.count }

    /// Keys a worker holds now.
    package var inProgress: Int { queue.inProgress }

    /// Reconcile steps run so far.
    public var reconcileCount: Int { reconciles.load(ordering: .relaxed) }

    /// How many times this term parsed an issuer's CA.
    public var authorityParseCount: Int { context.authorities.parseCount }

    /// Nothing queued and no worker busy, and the caches hold these resourceVersions (for
    /// tests: with every write of the reconciler in its caches and nothing left to do, the
    /// term has settled and only a new event wakes it).
    package func isSettled(pkis pkiVersions: [String: String], secrets secretVersions: [String: String]) -> Bool {
        guard queue.count == 0, queue.inProgress == 0 else { return false }
        func current<Object: KubeObject>(_ read: (String, String) -> Object?, _ versions: [String: String]) -> Bool {
            versions.allSatisfy { key, version in
                let parts = key.split(separator: "/", maxSplits: 1).map(String.init)
                return read(parts[0], parts[1])?.metadata.resourceVersion == version
            }
        }
        return current({ self.caches.pkis.get(namespace: $0, name: $1) }, pkiVersions)
            && current({ self.caches.managedSecrets.get(namespace: $0, name: $1) }, secretVersions)
    }

    private func work() {
        while let key = queue.next() {
            let outcome: PkiReconciler.Outcome
            if key.hasPrefix(LeadershipTerm.bundlePrefix) {
                outcome = keepTrustBundle(String(key.dropFirst(LeadershipTerm.bundlePrefix.count)))
            } else {
                let parts = key.split(separator: "/", maxSplits: 1).map(String.init)
                outcome = parts.count == 2 ? reconciler.reconcile(namespace: parts[0], name: parts[1], in: context) : .done(requeueAfter: nil)
            }
            reconciles.wrappingAdd(1, ordering: .relaxed)
            switch outcome {
            case .done(let requeueAfter):
                queue.forget(key)
                if let requeueAfter { queue.add(key, after: max(1, requeueAfter)) }
            case .retry:
                queue.addRateLimited(key)
            }
            queue.done(key)
        }
    }
}

extension LeadershipTerm {
    /// One namespace's trust bundle, or ("*") the scan for bundles in every namespace.
    private func keepTrustBundle(_ namespace: String) -> PkiReconciler.Outcome {
        guard let trustBundle = configuration.trustBundle else { return .done(requeueAfter: nil) }
        guard namespace != "*" else {
            do {
                let found = try context.client.list(.configMaps, namespace: nil,
                                                    options: ListOptions(labelSelector: "\(PkiReconciler.trustBundleLabel)=true"), of: ConfigMap.self)
                for map in found.items where map.metadata.name == trustBundle {
                    queue.add(LeadershipTerm.bundlePrefix + (map.metadata.namespace ?? ""))
                }
                return .done(requeueAfter: nil)
            } catch {
                return .retry("listing trust bundles: \(error)")
            }
        }
        return reconciler.reconcileTrustBundle(namespace: namespace, name: trustBundle, hasPkis: caches.hasPkis(in: namespace), in: context)
    }
}

/// Set once, when a term ends; read by every write of the term.
private final class EndedFlag: Sendable {
    private let value = Atomic<Bool>(false)
    var isSet: Bool { value.load(ordering: .acquiring) }
    func set() { value.store(true, ordering: .releasing) }
}
