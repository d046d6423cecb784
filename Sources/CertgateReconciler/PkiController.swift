import CertgatePKI
import CertgateSystem
import CertgateLocking
import CertgateKube
import Synchronization

/// Runs the reconcile step for every Pki: informers on pkis and Secrets feed a work queue,
/// and a fixed number of workers reconcile one key each at a time.
///
/// A Pki is queued when it is added, when its spec or metadata changes (not when only its
/// status does: that is the reconciler's own write), and on the informer's resync; a
/// Secret owned by a Pki queues its owner when it changes or goes away (so a Secret edited
/// or deleted by hand is restored); a Secret that an issuer names queues every Pki (so
/// Pkis waiting for their CA are issued as soon as it appears); ``requeueAll()`` queues them
/// all when the policy changes.
///
/// With a trust bundle ConfigMap name, each namespace's bundle is a key of the same queue
/// ("bundle:NAMESPACE"), queued when a Pki there comes or goes, when one of its Secrets
/// changes, when an issuer's CA changes, and for every bundle found when the term starts (a
/// namespace whose last Pki went while no term ran).
public final class PkiController: Sendable {
    private let queue: WorkQueue
    private let reconciler: PkiReconciler
    private let workers: Int
    private let pkis: Informer<Pki>
    /// Metadata only: owners and names are all the controller reads, and Secrets are large.
    private let secrets: Informer<PartialObjectMetadata>
    /// Pods, for the Events put on those that use a Pki's Secret.
    private let pods: Informer<Pod>
    private let reconciles = Atomic<Int>(0)
    private let term: TermFlag
    private let workerThreads = Locked<[JoinableThread]>([])
    private let client: KubeClient
    private let trustBundle: String?
    private static let bundlePrefix = "bundle:"

    /// - Parameter isIssuerSecret: whether a Secret (namespace, name) is some issuer's CA.
    /// - Parameter isLeading: whether the Lease is still held (a term ends the moment it is not).
    public init(client: KubeClient, reconciler: PkiReconciler, workers: Int = 4, resyncInterval: Double = 600,
                rateLimiter: RetryRateLimiter = RetryRateLimiter(), failures: FailureReporter? = nil,
                isIssuerSecret: @escaping @Sendable (String, String) -> Bool = { _, _ in false },
                isLeading: @escaping @Sendable () -> Bool = { true }, trustBundle: String? = nil) {
        term = TermFlag(isLeading: isLeading)
        self.client = client
        self.trustBundle = trustBundle
        let queue = WorkQueue(rateLimiter: rateLimiter)
        let bundleKey: @Sendable (String?) -> Void = { namespace in
            if trustBundle != nil { queue.add(PkiController.bundlePrefix + (namespace ?? "")) }
        }
        self.queue = queue
        self.reconciler = reconciler
        self.workers = max(1, workers)
        let enqueue: @Sendable (ObjectMeta) -> Void = {
            queue.add("\($0.namespace ?? "")/\($0.name ?? "")")
            bundleKey($0.namespace)
        }
        pkis = Informer(client: client, resource: .pkis, namespace: nil, resyncInterval: resyncInterval, failures: failures,
                        handlers: InformerHandlers(
                            onAdd: { enqueue($0.metadata) },
                            onUpdate: { old, new in
                                // Only status changed (our own write): nothing to do. A resync hands
                                // the same object twice, which is queued to be looked at again.
                                if old.metadata.resourceVersion != new.metadata.resourceVersion,
                                   old.metadata.generation == new.metadata.generation,
                                   old.metadata.labels == new.metadata.labels, old.metadata.annotations == new.metadata.annotations {
                                    return
                                }
                                enqueue(new.metadata)
                            },
                            onDelete: { bundleKey($0.metadata.namespace) }))
        let pkiInformer = pkis
        let secretChanged: @Sendable (PartialObjectMetadata) -> Void = { secret in
            if let owner = secret.metadata.ownerReferences?.first(where: { $0.controller == true && $0.kind == "Pki" }) {
                queue.add("\(secret.metadata.namespace ?? "")/\(owner.name)")
                bundleKey(secret.metadata.namespace)
            }
            if isIssuerSecret(secret.metadata.namespace ?? "", secret.metadata.name ?? "") {
                queue.addAll(pkiInformer.objects.map { "\($0.metadata.namespace ?? "")/\($0.metadata.name ?? "")" })
            }
        }
        secrets = Informer(client: client, resource: .secrets, namespace: nil, resyncInterval: resyncInterval, failures: failures,
                           handlers: InformerHandlers(onAdd: secretChanged, onUpdate: { _, new in secretChanged(new) }, onDelete: secretChanged))
        pods = Informer(client: client, resource: .pods, namespace: nil, resyncInterval: resyncInterval, failures: failures,
                        handlers: InformerHandlers())
    }

    /// Starts the term: the informers, then the workers.
    public func start() throws {
        let term = self.term
        reconciler.beginTerm(pods: pods, isCurrent: { term.isCurrent })
        do {
            try pods.start()
            try pkis.start()
            try secrets.start()
            for index in 0..<workers {
                let thread = try JoinableThread(name: "reconcile-\(index)") { [self] in work() }
                workerThreads.withLock { $0.append(thread) }
            }
            if trustBundle != nil {
                // Bundles left in namespaces whose last Pki went while no term ran.
                queue.add(PkiController.bundlePrefix + "*")
            }
        } catch {
            stop()
            throw error
        }
    }

    /// Ends the term and returns once nothing of it runs: writes are refused from the first
    /// moment, the informers stop, queued keys are dropped, and each worker finishes (or
    /// abandons at its next write) the key it holds and is joined.
    public func stop() {
        term.end()
        pkis.stop()
        secrets.stop()
        pods.stop()
        queue.shutDown()
        for thread in workerThreads.withLock({ threads in defer { threads.removeAll() }; return threads }) { thread.join() }
        reconciler.endTerm()
    }

    /// Queues every known Pki at once (each once, with no backoff): after the policy
    /// changed, each is judged again (admitted ones it now refuses get InvalidSpec, refused
    /// ones it now allows are issued) without waiting for the resync.
    public func requeueAll() {
        queue.addAll(pkis.objects.map { "\($0.metadata.namespace ?? "")/\($0.metadata.name ?? "")" })
    }

    /// True once the informers have listed (for /readyz).
    public var hasSynced: Bool { pkis.hasSynced && secrets.hasSynced && pods.hasSynced }

    /// Keys waiting now.
    public var queueDepth: Int { queue.count }

    /// Reconcile steps run so far.
    public var reconcileCount: Int { reconciles.load(ordering: .relaxed) }

    /// Nothing queued and no worker busy, and the caches hold these resourceVersions (for
    /// tests: with every write of the reconciler seen again by its informers and nothing
    /// left to do, the controller has settled and only a new event wakes it).
    package func isSettled(pkis pkiVersions: [String: String], secrets secretVersions: [String: String]) -> Bool {
        guard queue.count == 0, queue.inProgress == 0 else { return false }
        func current<Object: KubeObject>(_ informer: Informer<Object>, _ versions: [String: String]) -> Bool {
            versions.allSatisfy { key, version in
                let parts = key.split(separator: "/", maxSplits: 1).map(String.init)
                return informer.get(namespace: parts[0], name: parts[1])?.metadata.resourceVersion == version
            }
        }
        return current(pkis, pkiVersions) && current(secrets, secretVersions)
    }

    private func work() {
        while let key = queue.next() {
            let outcome: PkiReconciler.Outcome
            if key.hasPrefix(PkiController.bundlePrefix) {
                outcome = keepTrustBundle(String(key.dropFirst(PkiController.bundlePrefix.count)))
            } else {
                let parts = key.split(separator: "/", maxSplits: 1).map(String.init)
                outcome = parts.count == 2 ? reconciler.reconcile(namespace: parts[0], name: parts[1]) : .done(requeueAfter: nil)
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

extension PkiController {
    /// One namespace's trust bundle, or ("*") the scan for bundles in every namespace.
    private func keepTrustBundle(_ namespace: String) -> PkiReconciler.Outcome {
        guard let trustBundle else { return .done(requeueAfter: nil) }
        // Whether a namespace has a Pki is read from the informer: not before it has listed.
        guard pkis.hasSynced else { return .done(requeueAfter: 1) }
        guard namespace != "*" else {
            do {
                let found = try client.list(.configMaps, namespace: nil,
                                            options: ListOptions(labelSelector: "\(PkiReconciler.trustBundleLabel)=true"), of: ConfigMap.self)
                for map in found.items where map.metadata.name == trustBundle {
                    queue.add(PkiController.bundlePrefix + (map.metadata.namespace ?? ""))
                }
                return .done(requeueAfter: nil)
            } catch {
                return .retry("listing trust bundles: \(error)")
            }
        }
        let hasPkis = pkis.objects.contains { $0.metadata.namespace == namespace && $0.metadata.deletionTimestamp == nil }
        return reconciler.reconcileTrustBundle(namespace: namespace, name: trustBundle, hasPkis: hasPkis)
    }
}

/// Whether a controller's term is current: until it is stopped, and while the Lease is held.
final class TermFlag: Sendable {
    private let ended = Atomic<Bool>(false)
    private let isLeading: @Sendable () -> Bool

    init(isLeading: @escaping @Sendable () -> Bool) { self.isLeading = isLeading }

    var isCurrent: Bool { !ended.load(ordering: .acquiring) && isLeading() }

    func end() { ended.store(true, ordering: .releasing) }
}
