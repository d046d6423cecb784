import CertgateSystem
import CertgateLocking
import ArgumentParser
import CertgateLifecycle
import CertgateCrypto
import CertgateHTTP
import CertgateKube
import CertgateReconciler
import CertgateMetrics
import CertgateNet
import CertgateManifests
import CertgatePKI
import CertgateTLS
import CertgateWebhook
import CertgateWebhookSetup
import Dispatch
import Synchronization
import Logging
#if canImport(Glibc)
import Glibc
#endif

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the webhook over HTTPS (HTTP/1.1 and HTTP/2), reconcile Pkis when a cluster is configured, and serve metrics over plain HTTP.",
        discussion: """
        The serving certificate comes from --tls-cert-file and --tls-key-file (watched and reloaded \
        when they change, without dropping connections); or, with --tls-secret or --webhook-url, \
        from a CA and certificate Certgate keeps in a Secret itself (renewed on time, its CA \
        bundle written into --webhook-configuration); otherwise a development CA and serving \
        certificate are made in ./certs (as `certgate certs init` would) and used.
        """
    )

    @Option(help: "Comma-separated IP addresses to serve the webhook on. \"::\" serves IPv6 and IPv4.")
    var address = "0.0.0.0"

    @Option(help: "Port of the webhook server.")
    var port: UInt16 = 8443

    @Option(help: "PEM serving certificate, followed by any intermediates. Default: certs/server.crt (made if missing).",
            completion: .file())
    var tlsCertFile: String?

    @Option(help: "PEM private key of the serving certificate. Default: certs/server.key (made if missing).", completion: .file())
    var tlsKeyFile: String?

    @Option(help: "PEM CA bundle; when set, clients must present a certificate signed by it.", completion: .file())
    var clientCaFile: String?

    @Option(help: "Policy YAML (see examples/policy.yaml), reloaded when it changes. Default: the built-in example policy.",
            completion: .file(extensions: ["yaml", "yml"]))
    var policy: String?

    @Option(help: "HOST:PORT of the plain-HTTP metrics and health server; \"0\" turns it off.")
    var metricsAddress = "127.0.0.1:9090"

    @Option(help: "The least severe messages logged.")
    var logLevel: Logger.Level = .info

    @Option(help: "text for people, json for log pipelines (one object per line).")
    var logFormat: LogFormat = .text

    @Option(help: "Largest accepted request body, in bytes.")
    var maxRequestBodyBytes = 7 * 1024 * 1024

    @Option(help: "Largest accepted request head (HTTP/1.1) or header list (HTTP/2), in bytes.")
    var maxHeaderBytes = 64 * 1024

    @Option(help: "Connections past this are closed as soon as they are accepted.")
    var maxConnections = 4096

    @Option(help: ArgumentHelp("Time allowed to send a request head, as a Go duration (500ms, 10s, 1m30s).", valueName: "duration"))
    var requestHeaderTimeout = GoDuration("10s")

    @Option(help: ArgumentHelp("Time allowed to send a request body after its head, as a Go duration (500ms, 10s, 1m30s).", valueName: "duration"))
    var requestBodyTimeout = GoDuration("30s")

    @Option(help: ArgumentHelp("Kept-alive connections with no request are closed after this, as a Go duration (500ms, 10s, 1m30s).", valueName: "duration"))
    var idleTimeout = GoDuration("120s")

    @Option(help: ArgumentHelp("On SIGTERM or SIGINT, time for requests in flight to finish before connections are closed, as a Go duration (500ms, 10s, 1m30s).",
                               valueName: "duration"))
    var shutdownGracePeriod = GoDuration("25s")

    @Option(help: ArgumentHelp("How often the certificate and policy files are checked for changes, as a Go duration (500ms, 10s, 1m30s).", valueName: "duration"))
    var certificateCheckInterval = GoDuration("1s")

    @Option(help: "Event-loop threads (default: one per core, at most 8).")
    var eventLoops: Int?

    @Flag(help: "Offer only HTTP/1.1 in ALPN.")
    var disableHttp2 = false

    @OptionGroup(title: "Serving certificate and webhook registration")
    var setup: WebhookSetupOptions

    @OptionGroup(title: "Cluster and reconciler")
    var reconciler: ReconcilerOptions

    func validate() throws {
        guard (tlsCertFile == nil) == (tlsKeyFile == nil) else {
            throw ValidationError("--tls-cert-file and --tls-key-file go together")
        }
        if let eventLoops, eventLoops < 1 { throw ValidationError("--event-loops must be at least 1") }
        for (flag, value) in [("--max-request-body-bytes", maxRequestBodyBytes), ("--max-header-bytes", maxHeaderBytes),
                              ("--max-connections", maxConnections)] where value < 1 {
            throw ValidationError("\(flag) must be at least 1")
        }
        _ = try listenAddresses()
        _ = try metricsListenAddress()
        try setup.validate(tlsCertFile: tlsCertFile, clientCaFile: clientCaFile)
    }

    func run() throws {
        LoggingSystem.bootstrap { [logFormat, logLevel] in CertgateLogHandler(label: $0, format: logFormat, level: logLevel) }
        let logger = Logger(label: "certgate")
        logger.info("starting", metadata: ["version": "\(Version.release)"])
        Signals.ignoreBrokenPipe()
        MemoryTuning.limitMallocArenas()

        let selfManaged = setup.isSelfManaged(tlsCertFile: tlsCertFile)
        let client = reconciler.reconcile || selfManaged || setup.webhookUrl != nil ? try reconciler.connect(logger: logger) : nil
        let registry = MetricsRegistry()
        registry.gauge("certgate_build_info", help: "Always 1; its label names the release running.", labels: ["version"])
            .labels(Version.release).set(1)
        let serverMetrics = ServerMetrics(registry: registry)
        let certificate = try makeServingCertificate(client: client, metrics: CertificateMetrics(registry: registry), logger: logger)
        let serving = certificate.serving

        let group = try EventLoopGroup(count: eventLoops ?? EventLoopGroup.defaultLoopCount)
        let readiness = ReadinessChecks()
        var webhookRouter = Router()
        webhookRouter.addHealthRoutes(readiness)
        // Told of each policy that loads after the first, once the reconciler exists.
        let policyChanged = Locked<(@Sendable () -> Void)?>(nil)
        let policySource = try makePolicySource(registry: registry, logger: logger) { policyChanged.withLock { $0 }?() }
        let reviews = registry.counter("certgate_admission_reviews_total",
                                       help: "AdmissionReviews answered, by operation and decision (allowed, denied).",
                                       labels: ["operation", "decision"])
        // The operations the API server sends, looked up once: labels(...) hashes and locks.
        // Found by comparing, not hashing: four short names.
        let reviewCounters = AdmissionRequest.operations.map { operation in
            (operation: operation, allowed: reviews.labels(operation, "allowed"), denied: reviews.labels(operation, "denied"))
        }
        let webhookHandler = AdmissionWebhook(policy: { policySource.value }, onDecision: { review, response in
            let request = review.request
            if let counters = reviewCounters.first(where: { $0.operation == request.operation }) {
                (response.allowed ? counters.allowed : counters.denied).increment()
            } else {
                reviews.labels(request.operation, response.allowed ? "allowed" : "denied").increment()
            }
            logger.debug("admission decision", metadata: [
                "uid": "\(request.uid)", "operation": "\(request.operation)", "namespace": "\(request.namespace ?? "")",
                "name": "\(request.name ?? "")", "user": "\(request.userInfo.username ?? "")", "dry_run": "\(request.dryRun)",
                "allowed": "\(response.allowed)", "message": "\(response.status?.message ?? "")",
            ])
        })
        webhookRouter.add("POST", "/validate") { webhookHandler.handle($0) }

        var configuration = HTTPServerConfiguration(name: "webhook", addresses: try listenAddresses(), tls: serving)
        configuration.limits = HTTPLimits(maxHeaderBytes: maxHeaderBytes, maxBodyBytes: maxRequestBodyBytes)
        configuration.maxConnections = maxConnections
        configuration.timeouts.requestHeader = requestHeaderTimeout.seconds
        configuration.timeouts.requestBody = requestBodyTimeout.seconds
        configuration.timeouts.idle = idleTimeout.seconds
        let webhook = HTTPServer(configuration: configuration, router: webhookRouter, group: group,
                                 metrics: serverMetrics, logger: logger)
        readiness.add("serving-certificate") { serving.context == nil ? "no serving certificate has loaded from \(certificate.source)" : nil }
        readiness.add("shutdown") { webhook.isShuttingDown ? "the server is shutting down" : nil }
        readiness.add("policy") { policySource.value == nil ? "no policy has loaded from \(policySource.paths.first ?? "")" : nil }
        let runner = try ReconcilerRunner.make(options: reconciler, client: client, policy: { policySource.value }, registry: registry, logger: logger)
        if let runner { policyChanged.withLock { $0 = { runner.policyChanged() } } }
        readiness.add("reconciler") { runner?.readinessProblem }

        var metricsServer: HTTPServer?
        if let metricsAddress = try metricsListenAddress() {
            var router = Router()
            router.addHealthRoutes(readiness)
            router.add("GET", "/metrics") { _ in
                HTTPResponse(status: 200, headers: ["content-type": "text/plain; version=0.0.4; charset=utf-8"],
                             body: Array(registry.exposition().utf8))
            }
            metricsServer = HTTPServer(configuration: HTTPServerConfiguration(name: "metrics", addresses: [metricsAddress], tls: nil),
                                       router: router, group: group, metrics: serverMetrics, logger: logger)
        }

        // Up in dependency order, down in reverse, each joined before what it depends on: the
        // reconciler goes first (its term joined, then the Lease released for the next
        // leader), then the servers drain, then the watchers, then the event loops.
        let policyInterval = certificateCheckInterval.seconds
        let shutdownGrace = shutdownGracePeriod.seconds
        var components: [any Supervised] = [
            SupervisedCalls("event loops", start: {}, stop: { group.stopAndWait() }),
            SupervisedCalls("policy watcher", start: { if policy != nil { try policySource.startWatching(interval: policyInterval) } },
                            stop: { policySource.stopWatching() }),
            SupervisedCalls("serving certificate", start: { try certificate.startKeeping() }, stop: { certificate.stopKeeping() }),
            SupervisedCalls("webhook server", start: { _ = try webhook.start() }, stop: { webhook.shutdown(gracePeriod: shutdownGrace) }),
        ]
        if let metricsServer {
            components.append(SupervisedCalls("metrics server", start: { _ = try metricsServer.start() }, stop: { metricsServer.shutdown(gracePeriod: 1) }))
        }
        if let runner { components.append(runner) }
        let supervisor = Supervisor(components, logger: logger)
        try supervisor.start()

        let stop = DispatchSemaphore(value: 0)
        let signalCount = SignalCounter()
        let sources = Signals.observe([SIGTERM, SIGINT]) { number in
            if signalCount.next() == 1 {
                logger.info("signal received; shutting down gracefully", metadata: ["signal": "\(number == SIGTERM ? "SIGTERM" : "SIGINT")"])
                stop.signal()
            } else {
                logger.warning("second signal; exiting now")
                Glibc.exit(1)
            }
        }
        stop.wait()
        supervisor.stop()
        withExtendedLifetime(sources) {}
        logger.info("stopped")
    }

    /// The policy in force, reloaded from --policy when it changes; the built-in example
    /// policy when no file is given.
    private func makePolicySource(registry: MetricsRegistry, logger: Logger,
                                  onLoaded: @escaping @Sendable () -> Void) throws -> FileReloader<Policy> {
        let reloads = registry.counter("certgate_policy_reloads_total",
                                       help: "Attempts to load a changed policy file, by result (success, failure).", labels: ["result"])
        guard let path = policy else {
            logger.warning("no --policy given; using the built-in example policy (namespace app1 may use service names app1 and app2)")
            let builtIn = try PolicyFile.parse(PolicyFile.builtInDefault)
            let source = FileReloader<Policy>(paths: [], build: { _ in builtIn })
            source.reload()
            return source
        }
        let source = FileReloader<Policy>(paths: [path], build: { contents in
            guard let bytes = contents[0] else { throw UnreadableFileError(path: path, role: "policy") }
            return try PolicyFile.parse(String(decoding: bytes, as: UTF8.self))
        }, onEvent: { event in
            switch event {
            case .loaded(let loaded):
                reloads.labels("success").increment()
                logger.info("policy loaded", metadata: ["file": "\(path)", "namespaces": "\(loaded.namespaces.count)", "issuers": "\(loaded.issuers.count)"])
                onLoaded()
            case .rejected(let error):
                reloads.labels("failure").increment()
                logger.error("policy not loaded; keeping the one in force", metadata: ["file": "\(path)", "error": "\(error)"])
            }
        })
        source.reload()
        return source
    }

    /// The serving certificate from files (registering --webhook-url with --webhook-ca-file),
    /// or self-managed in a Secret.
    private func makeServingCertificate(client: KubeClient?, metrics: CertificateMetrics,
                                        logger: Logger) throws -> ServingCertificateSetup {
        if setup.webhookUrl != nil && client == nil {
            throw ValidationError("--webhook-url registers the webhook in a cluster, and none is configured: pass --kubeconfig")
        }
        let selfManaged = setup.isSelfManaged(tlsCertFile: tlsCertFile)
        let files = selfManaged ? nil : try servingCertificateFiles(logger: logger)
        let namespace = reconciler.ownNamespace
        let source = files?.certificateFile ?? "Secret \(namespace)/\(setup.secretName)"
        let onEvent: @Sendable (ServingCertificate.Event) -> Void = { event in
            switch event {
            case .loaded(let context):
                metrics.reloads.labels("success").increment()
                metrics.expiry.set(Double(context.leaf.notAfter))
                logger.info("serving certificate loaded", metadata: [
                    "source": "\(source)", "serial": "\(context.leaf.serialNumberHex)",
                    "not_after": "\(formatEpoch(context.leaf.notAfter))",
                ])
            case .rejected(let error):
                metrics.reloads.labels("failure").increment()
                logger.error("serving certificate not loaded; keeping the one in use", metadata: ["error": "\(error)"])
            }
        }
        guard let files else {
            guard let client else {
                throw ValidationError("the self-managed serving certificate (--tls-secret) is kept in the cluster, and none is configured: pass --kubeconfig")
            }
            let serving = ServingCertificate(offerHTTP2: !disableHttp2, onEvent: onEvent)
            let manager = try setup.selfManagedCertificate(client: client, namespace: namespace, serving: serving, logger: logger)
            return ServingCertificateSetup(serving: serving, source: source, selfManaged: manager)
        }
        let serving = ServingCertificate(files: files, offerHTTP2: !disableHttp2, onEvent: onEvent)
        serving.reload()
        if serving.context == nil {
            logger.warning("no usable serving certificate yet; TLS handshakes fail and /readyz reports not ready until one loads")
        }
        var registeredBundle: FileReloader<[UInt8]>?
        if let client, let caFile = setup.webhookCaFile {
            registeredBundle = try registerWebhook(client: client, caFile: caFile, logger: logger)
        }
        return ServingCertificateSetup(serving: serving, source: source, watchInterval: certificateCheckInterval.seconds,
                                       registeredBundle: registeredBundle)
    }

    /// Registers --webhook-url with the bundle in `caFile`, and again whenever the file
    /// changes (a rotated CA). A bundle that does not parse, or cannot be registered, fails
    /// the start; later, it is logged and the registration in place stays.
    private func registerWebhook(client: KubeClient, caFile: String, logger: Logger) throws -> FileReloader<[UInt8]> {
        let setup = setup
        let watching = Atomic(false)  // the first failure ends the start instead
        let bundle = FileReloader<[UInt8]>(paths: [caFile], build: { contents in
            guard let bytes = contents[0] else { throw UnreadableFileError(path: caFile, role: "webhook CA bundle") }
            do { _ = try Certificate.chain(pem: bytes) } catch { throw CertificateFileError(path: caFile, underlying: error) }
            if let registration = setup.registration(caBundle: bytes) {
                let outcome = try registration.apply(with: client)
                logger.info("webhook registered", metadata: ["validatingwebhookconfiguration": "\(registration.name)",
                                                              "url": "\(registration.url)", "change": "\(outcome)"])
            }
            return bytes
        }, onEvent: { event in
            if case .rejected(let error) = event, watching.load(ordering: .relaxed) {
                logger.error("webhook CA bundle not registered; the registration in place stays", metadata: ["error": "\(error)"])
            }
        })
        if let error = bundle.reload() { throw error }
        watching.store(true, ordering: .relaxed)
        try bundle.startWatching(interval: certificateCheckInterval.seconds)
        return bundle
    }

    /// The certificate files to serve; with none given, the development pair in ./certs,
    /// made on first use.
    private func servingCertificateFiles(logger: Logger) throws -> ServingCertificateFiles {
        if let tlsCertFile, let tlsKeyFile {
            return ServingCertificateFiles(certificateFile: tlsCertFile, keyFile: tlsKeyFile, clientCAFile: clientCaFile)
        }
        let directory = "certs"
        let files = ServingCertificateFiles(certificateFile: "\(directory)/\(DevelopmentCertificates.certificateFile)",
                                            keyFile: "\(directory)/\(DevelopmentCertificates.keyFile)", clientCAFile: clientCaFile)
        if !fileExists(files.certificateFile) || !fileExists(files.keyFile) {
            logger.warning("no --tls-cert-file given; making a development CA and serving certificate", metadata: ["dir": "\(directory)"])
            try DevelopmentCertificates(hosts: ["localhost", "127.0.0.1", "::1"], validDays: 365).write(to: directory)
        }
        return files
    }

    private func listenAddresses() throws -> [SocketAddress] {
        let hosts = address.split(separator: ",").map { $0.trimmingWhitespace() }.filter { !$0.isEmpty }
        guard !hosts.isEmpty else { throw ValidationError("--address names no address") }
        do {
            return try hosts.map { try SocketAddress(host: $0, port: port) }
        } catch {
            throw ValidationError("--address: \(error)")
        }
    }

    private func metricsListenAddress() throws -> SocketAddress? {
        if metricsAddress == "0" || metricsAddress.isEmpty { return nil }
        guard let address = HostPort(metricsAddress) else {
            throw ValidationError("--metrics-address must be HOST:PORT (such as 127.0.0.1:9090 or [::1]:9090), or 0")
        }
        do {
            return try SocketAddress(host: address.host, port: address.port)
        } catch {
            throw ValidationError("--metrics-address: \(error)")
        }
    }
}

/// Counts signals so the second one can force an exit.
final class SignalCounter: Sendable {
    private let count = Atomic<Int>(0)
    func next() -> Int { count.wrappingAdd(1, ordering: .relaxed).newValue }
}

/// Seconds since 1970 as RFC 3339 UTC.
func formatEpoch(_ seconds: Int64) -> String {
    formatUTC(Int(seconds), "%Y-%m-%dT%H:%M:%SZ")
}

/// Where `serve`'s serving certificate comes from and what keeps it current.
struct ServingCertificateSetup {
    let serving: ServingCertificate
    /// The certificate files or the Secret, for logs and readiness.
    let source: String
    var selfManaged: SelfManagedCertificate?
    /// How often the certificate files are checked (nil when self-managed).
    var watchInterval: Double?
    /// --webhook-ca-file, re-registered when it changes.
    var registeredBundle: FileReloader<[UInt8]>?

    /// Keeps the certificate current: renews the self-managed one, or watches the files.
    func startKeeping() throws {
        try selfManaged?.start()
        if let watchInterval { try serving.startWatching(interval: watchInterval) }
    }

    /// Stops watching files and renewing, and joins what did it; the certificate in use stays.
    func stopKeeping() {
        selfManaged?.stop()
        registeredBundle?.stopWatching()
        serving.stopWatching()
    }
}
