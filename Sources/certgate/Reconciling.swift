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

    @Flag(help: "Create a self-signed CA Secret for the policy's default issuer when its CA Secret is absent.")
    var bootstrapCa = false

    @Option(name: .customLong("bootstrap-ca-issuer"),
            help: ArgumentHelp("Also create the CA Secret of this issuer of the policy when it is absent (repeatable). Only issuers named "
                                   + "here or the default one (--bootstrap-ca) get one, so a typo in a policy's secretName never mints a root.",
                               valueName: "issuer"))
    var bootstrapCaIssuers: [String] = []

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

extension ReconcilerRunner: Supervised {
    public var supervisionName: String { "reconciler" }

    /// Returns nil (after one log line) when --reconcile=false or no cluster is configured.
    static func make(options: ReconcilerOptions, client: KubeClient?, policy: @escaping @Sendable () -> Policy?, registry: MetricsRegistry,
                     logger: Logger) throws -> ReconcilerRunner? {
        guard options.reconcile else {
            logger.info("--reconcile=false: serving the webhook only")
            return nil
        }
        guard let client else { return nil }
        let current = WeakRunner()
        let metrics = ReconcilerMetrics(registry: registry) { current.runner?.queueDepth ?? 0 }
        let reconcileFailures = FailureReporter(logger: logger) { metrics.failures.labels("reconcile", $0).increment() }
        let informerFailures = FailureReporter(logger: logger) { metrics.failures.labels("informer", $0).increment() }
        let reconciler = PkiReconciler(policy: policy, bootstrapCA: options.bootstrapCa, bootstrapIssuers: Set(options.bootstrapCaIssuers),
                                       metrics: metrics, failures: reconcileFailures)
        var election: ReconcilerRunner.Election?
        if options.leaderElect {
            var host = [CChar](repeating: 0, count: 256)
            gethostname(&host, host.count)
            let identity = String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) + "_"
                + String(UInt32.random(in: 0...UInt32.max), radix: 16)
            election = ReconcilerRunner.Election(
                namespace: options.leaderElectionNamespace ?? options.ownNamespace, name: options.leaderElectResourceName, identity: identity,
                timing: LeaderElector.Timing(leaseDuration: options.leaseDuration.seconds, renewDeadline: options.renewDeadline.seconds,
                                             retryPeriod: options.retryPeriod.seconds))
        }
        logger.info("reconciling", metadata: ["leader_elect": "\(options.leaderElect)", "workers": "\(options.workers)"])
        let runner = ReconcilerRunner(client: client, reconciler: reconciler,
                                      configuration: TermConfiguration(workers: options.workers, trustBundle: options.trustBundleConfigmap),
                                      election: election, informerFailures: informerFailures, logger: logger)
        current.runner = runner
        return runner
    }
}

/// Breaks the reference cycle between the runner and the queue-depth gauge that reads it.
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
