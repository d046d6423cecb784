import CertgateSystem
import CertgateLocking
import ArgumentParser
import CertgateLifecycle
import CertgateKube
import CertgateMetrics
import CertgateNet
import CertgatePKI
import CertgateReconciler
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Which cluster to talk to, as kubectl finds it; `serve` and `renew` read the same flags.
struct ClusterOptions: ParsableArguments {
    @Option(help: "Path to a kubeconfig. Default: $KUBECONFIG, the pod's service account, then ~/.kube/config.", completion: .file())
    var kubeconfig: String?

    @Option(help: "The kubeconfig context to use (default: its current-context).")
    var context: String?

    @Flag(help: "Accept a kubeconfig cluster with insecure-skip-tls-verify (development only).")
    var allowInsecureKubeconfig = false

    func load() throws -> ClusterConfiguration {
        try ClusterConfigurationLoader.load(kubeconfig: kubeconfig, context: context, allowInsecure: allowInsecureKubeconfig,
                                            environment: ProcessEnvironment.variables)
    }
}

/// The cluster and reconciler flags, named as Kubernetes components name them.
struct ReconcilerOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Run the reconciler besides the webhook (false for a webhook-only replica).", valueName: "bool"),
            completion: .list(["true", "false"]))
    var reconcile = true

    @OptionGroup var cluster: ClusterOptions

    @Flag(help: "Create a self-signed CA Secret for an issuer whose CA Secret is absent.")
    var bootstrapCa = false

    @Option(help: "Concurrent reconcile workers.")
    var workers = 4

    @Option(help: ArgumentHelp("Reconcile only while holding the leader Lease (every replica serves the webhook).", valueName: "bool"),
            completion: .list(["true", "false"]))
    var leaderElect = true

    // Spelt as kube-controller-manager spells it; the earlier --leader-election-namespace still works.
    @Option(name: [.customLong("leader-elect-resource-namespace"), .customLong("leader-election-namespace")],
            help: "Namespace of the leader Lease. Default: --namespace.")
    var leaderElectionNamespace: String?

    @Option(help: "Name of the leader Lease. Two installations in one namespace need different names.")
    var leaderElectResourceName = "certgate-leader"

    @Option(help: "Keep a ConfigMap of this name, with ca.crt holding the issuers' CA certificates, in every namespace that has a Pki (off when not given).")
    var trustBundleConfigmap: String?

    @Option(help: "Namespace Certgate runs in (its Lease and self-managed serving certificate). Default: $POD_NAMESPACE, the pod's service account namespace, then default.")
    var namespace: String?

    @Option(help: ArgumentHelp("Requests a second to the Kubernetes API once the burst is spent. Not given: no client-side limit "
                                   + "when the API server reports API Priority and Fairness (as controller-runtime and cert-manager do), "
                                   + "else 20. A negative value turns the limit off.", valueName: "qps"))
    var kubeApiQps: Double?

    @Option(help: ArgumentHelp("Requests to the Kubernetes API that may go at once before --kube-api-qps paces them. "
                                   + "Not given: as --kube-api-qps, else 30. A negative value turns the limit off.", valueName: "count"))
    var kubeApiBurst: Int?

    @Option(help: ArgumentHelp("How long a Lease stays valid without renewal, as a Go duration (500ms, 10s, 1m30s).", valueName: "duration"))
    var leaseDuration = GoDuration("15s")

    @Option(help: ArgumentHelp("Within this, the leader must renew, or stop reconciling, as a Go duration (500ms, 10s, 1m30s).", valueName: "duration"))
    var renewDeadline = GoDuration("10s")

    @Option(help: ArgumentHelp("Time between attempts to acquire or renew the Lease, as a Go duration (500ms, 10s, 1m30s).", valueName: "duration"))
    var retryPeriod = GoDuration("2s")

    func validate() throws {
        guard workers >= 1 else { throw ValidationError("--workers must be at least 1") }
        if let kubeApiQps, kubeApiQps == 0 || !kubeApiQps.isFinite {
            throw ValidationError("--kube-api-qps must be a number other than 0 (a negative value turns the client-side limit off)")
        }
        if kubeApiBurst == 0 {
            throw ValidationError("--kube-api-burst must be a number other than 0 (a negative value turns the client-side limit off)")
        }
        if let trustBundleConfigmap, !isValidObjectName(trustBundleConfigmap) {
            throw ValidationError("--trust-bundle-configmap: \"\(trustBundleConfigmap)\" is not a valid ConfigMap name "
                + "(lower-case letters, digits, '-' and '.', starting and ending with a letter or digit)")
        }
        guard isValidObjectName(leaderElectResourceName) else {
            throw ValidationError("--leader-elect-resource-name: \"\(leaderElectResourceName)\" is not a valid object name "
                + "(lower-case letters, digits, '-' and '.', starting and ending with a letter or digit)")
        }
    }
}

extension ReconcilerOptions {
    /// --namespace, or where the pod runs.
    var ownNamespace: String {
        if let namespace { return namespace }
        if let namespace = ProcessEnvironment.variables["POD_NAMESPACE"], !namespace.isEmpty { return namespace }
        if let file = readWholeFile("\(ClusterConfigurationLoader.serviceAccountDirectory)/namespace") {
            return String(decoding: file, as: UTF8.self).trimmingWhitespace()
        }
        return "default"
    }

    /// A client for the configured cluster; nil (after one log line) when no configuration
    /// exists at all and none was named, so `serve` runs the webhook alone on a machine
    /// without a cluster.
    func connect(logger: Logger) throws -> KubeClient? {
        let configuration: ClusterConfiguration
        do {
            configuration = try cluster.load()
        } catch let error as ClusterConfigurationError where cluster.kubeconfig == nil && error.reason == .noConfigurationFound {
            logger.warning("no cluster configuration found; serving the webhook only (pass --kubeconfig to reconcile)")
            return nil
        }
        let limits = KubeClientLimits(pacing: KubeClientLimits.pacing(qps: kubeApiQps, burst: kubeApiBurst))
        logger.info("cluster configured", metadata: ["cluster": "\(configuration.source)", "client_rate_limit": "\(limits.pacing)"])
        return try KubeClient(configuration: configuration, limits: limits, userAgent: Version.userAgent) { detected in
            switch detected {
            case .priorityAndFairness:
                logger.info("the API server reports API Priority and Fairness: no client-side rate limit")
            case .noPriorityAndFairness:
                logger.info("the API server does not report API Priority and Fairness (yet): client-side rate limit in force",
                            metadata: ["qps": "\(KubeClientLimits.fallbackQPS)", "burst": "\(KubeClientLimits.fallbackBurst)"])
            }
        }
    }
}

/// The reconciler as `serve` runs it: a controller per leadership term, each started when
/// the Lease is won and stopped and joined before it is released or given up.
final class ReconcilerRunner: Supervised {
    let supervisionName = "reconciler"
    private let controller = Locked<PkiController?>(nil)
    private let elector: LeaderElector?
    private let makeController: @Sendable (_ isLeading: @escaping @Sendable () -> Bool) -> PkiController
    private let recorder: EventRecorder
    private let logger: Logger

    /// Returns nil (after one log line) when --reconcile=false or no cluster is configured.
    static func make(options: ReconcilerOptions, client: KubeClient?, policy: @escaping @Sendable () -> Policy?, registry: MetricsRegistry,
                     logger: Logger) throws -> ReconcilerRunner? {
        guard options.reconcile else {
            logger.info("--reconcile=false: serving the webhook only")
            return nil
        }
        guard let client else { return nil }
        let recorder = EventRecorder(client: client, asynchronous: true)
        let current = WeakRunner()
        let metrics = ReconcilerMetrics(registry: registry) { current.runner?.queueDepth ?? 0 }
        let reconcileFailures = FailureReporter(logger: logger) { metrics.failures.labels("reconcile", $0).increment() }
        let informerFailures = FailureReporter(logger: logger) { metrics.failures.labels("informer", $0).increment() }
        let reconciler = PkiReconciler(client: client, events: recorder, policy: policy, bootstrapCA: options.bootstrapCa, metrics: metrics,
                                       failures: reconcileFailures)
        let workers = options.workers
        let trustBundle = options.trustBundleConfigmap
        let makeController: @Sendable (@escaping @Sendable () -> Bool) -> PkiController = { isLeading in
            PkiController(client: client, reconciler: reconciler, workers: workers, failures: informerFailures, isIssuerSecret: { namespace, name in
                policy()?.issuers.values.contains { $0.namespace == namespace && $0.name == name } ?? false
            }, isLeading: isLeading, trustBundle: trustBundle)
        }
        logger.info("reconciling", metadata: ["leader_elect": "\(options.leaderElect)"])
        let runner = ReconcilerRunner(client: client, options: options, recorder: recorder, makeController: makeController, logger: logger)
        current.runner = runner
        return runner
    }

    private init(client: KubeClient, options: ReconcilerOptions, recorder: EventRecorder,
                 makeController: @escaping @Sendable (@escaping @Sendable () -> Bool) -> PkiController, logger: Logger) {
        self.makeController = makeController
        self.recorder = recorder
        self.logger = logger
        guard options.leaderElect else {
            elector = nil
            return
        }
        let namespace = options.leaderElectionNamespace ?? options.ownNamespace
        var host = [CChar](repeating: 0, count: 256)
        gethostname(&host, host.count)
        let identity = String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) + "_" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
        let timing = LeaderElector.Timing(leaseDuration: options.leaseDuration.seconds, renewDeadline: options.renewDeadline.seconds,
                                          retryPeriod: options.retryPeriod.seconds)
        let box = WeakRunner()
        elector = LeaderElector(client: client, namespace: namespace, name: options.leaderElectResourceName, identity: identity, timing: timing,
                                onStartedLeading: { box.runner?.beginTerm() }, onStoppedLeading: { box.runner?.endTerm() })
        box.runner = self
    }

    /// Campaigns for the Lease, or (without leader election) starts the one term at once.
    func start() throws {
        if let elector { try elector.start() } else { beginTerm() }
    }

    /// Ends the term (its workers joined), releases the Lease, and sends the Events still queued.
    func stopAndJoin() {
        if let elector { elector.stop() } else { endTerm() }
        if !recorder.shutDown(flushSeconds: 5) { logger.warning("some Events were not sent before the deadline") }
    }

    var queueDepth: Int { controller.withLock { $0?.queueDepth ?? 0 } }

    /// A new policy is in force: every Pki is judged again under it.
    func policyChanged() {
        let current = controller.withLock { $0 }
        guard let current else { return }
        current.requeueAll()
        logger.info("policy changed; every Pki is queued to be judged again")
    }

    /// Ready when not leading (the webhook serves) or once the informers have listed.
    var readinessProblem: String? {
        guard let controller = controller.withLock({ $0 }) else { return nil }
        return controller.hasSynced ? nil : "the reconciler's informers have not synced yet"
    }

    /// A fresh controller for a new term; the previous one, if any, was stopped and joined.
    private func beginTerm() {
        let elector = self.elector
        let fresh = makeController { elector?.isLeader ?? true }
        do {
            try fresh.start()
        } catch {
            logger.error("the reconciler could not start; it waits for the next term", metadata: ["error": "\(error)"])
            return
        }
        controller.withLock { $0 = fresh }
        logger.info("reconciler started (leader)")
    }

    private func endTerm() {
        let old = controller.withLock { controller -> PkiController? in
            let old = controller
            controller = nil
            return old
        }
        guard let old else { return }
        old.stop()
        // The term's Events are its writes too: they go out before the Lease is released,
        // as controller-runtime stops its recorder before it gives up leadership.
        if !recorder.flush(seconds: 5) { logger.warning("some of the term's Events were not sent before the deadline") }
        logger.info("reconciler stopped (not leader)")
    }
}

/// Breaks the reference cycles between the runner and the callbacks that reach it.
private final class WeakRunner: @unchecked Sendable {
    // Set once while the runner is built, before anything reads it.
    weak var runner: ReconcilerRunner?
}

/// The process environment without Foundation.
enum ProcessEnvironment {
    static var variables: [String: String] {
        var result: [String: String] = [:]
        var pointer = environ
        while let entry = pointer.pointee {
            let text = String(cString: entry)
            if let equals = text.firstIndex(of: "=") {
                result[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
            pointer += 1
        }
        return result
    }
}
