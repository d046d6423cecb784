import CertgateLocking
import CertgateCommandLine
import CertgateLifecycle
import CertgateCrypto
import CertgateHTTP
import CertgateKube
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

struct Serve {
    static let command = Command(
        "serve",
        abstract: "Serve the webhook over HTTPS (HTTP/1.1 and HTTP/2), reconcile Pkis when a cluster is configured, and serve metrics over plain HTTP.",
        discussion: """
        The serving certificate comes from --tls-cert-file and --tls-key-file (watched and reloaded \
        when they change, without dropping connections); or, with --tls-secret or --webhook-url, \
        from a CA and certificate Certgate keeps in a Secret itself (renewed on time, its CA \
        bundle written into --webhook-configuration); otherwise a development CA and serving \
        certificate are made in ./certs (as `certgate certs init` would) and used.
        """,
        options: [
            OptionGroup([
                Flags.address, Flags.port, Flags.tlsCertFile, Flags.tlsKeyFile, Flags.clientCaFile, Flags.policy,
                Flags.metricsAddress, Flags.logLevel, Flags.logFormat, Flags.maxRequestBodyBytes, Flags.maxHeaderBytes,
                Flags.maxConnections, Flags.requestHeaderTimeout, Flags.requestBodyTimeout, Flags.idleTimeout,
                Flags.shutdownGracePeriod, Flags.certificateCheckInterval, Flags.eventLoops, Flags.disableHttp2,
            ]),
            OptionGroup("Serving certificate and webhook registration", WebhookSetupOptions.options),
            OptionGroup("Cluster and reconciler", ReconcilerOptions.options),
        ]
    ) { try Serve($0).run() }

    enum Flags {
        static let address = Option<String>("--address", default: "0.0.0.0", help: "Comma-separated IP addresses to serve the webhook on. \"::\" serves IPv6 and IPv4.")
        static let port = Option<UInt16>("--port", default: 8443, help: "Port of the webhook server.")
        static let tlsCertFile = Option<String>("--tls-cert-file", help: "PEM serving certificate, followed by any intermediates. Default: certs/server.crt (made if missing).")
        static let tlsKeyFile = Option<String>("--tls-key-file", help: "PEM private key of the serving certificate. Default: certs/server.key (made if missing).")
        static let clientCaFile = Option<String>("--client-ca-file", help: "PEM CA bundle; when set, clients must present a certificate signed by it.")
        static let policy = Option<String>("--policy", help: "Policy YAML (see examples/policy.yaml), reloaded when it changes. Default: the built-in example policy.")
        static let metricsAddress = Option<String>("--metrics-address", default: "127.0.0.1:9090", help: "HOST:PORT of the plain-HTTP metrics and health server; \"0\" turns it off.")
        static let logLevel = Option<Logger.Level>("--log-level", default: .info, help: "The least severe messages logged: trace, debug, info, notice, warning, error or critical.")
        static let logFormat = Option<LogFormat>("--log-format", default: .text, help: "text for people, json for log pipelines (one object per line).")
        static let maxRequestBodyBytes = Option<Int>("--max-request-body-bytes", default: 7 * 1024 * 1024, help: "Largest accepted request body, in bytes.")
        static let maxHeaderBytes = Option<Int>("--max-header-bytes", default: 64 * 1024, help: "Largest accepted request head (HTTP/1.1) or header list (HTTP/2), in bytes.")
        static let maxConnections = Option<Int>("--max-connections", default: 4096, help: "Connections past this are closed as soon as they are accepted.")
        static let requestHeaderTimeout = Option<String>("--request-header-timeout", default: "10s", help: "Time allowed to send a request head, Go duration.")
        static let requestBodyTimeout = Option<String>("--request-body-timeout", default: "30s", help: "Time allowed to send a request body after its head, Go duration.")
        static let idleTimeout = Option<String>("--idle-timeout", default: "120s", help: "Kept-alive connections with no request are closed after this, Go duration.")
        static let shutdownGracePeriod = Option<String>("--shutdown-grace-period", default: "25s", help: "On SIGTERM or SIGINT, time for requests in flight to finish before connections are closed, Go duration.")
        static let certificateCheckInterval = Option<String>("--certificate-check-interval", default: "1s", help: "How often the certificate and policy files are checked for changes, Go duration.")
        static let eventLoops = Option<Int>("--event-loops", help: "Event-loop threads (default: one per core, at most 8).")
        static let disableHttp2 = Flag("--disable-http2", help: "Offer only HTTP/1.1 in ALPN.")
    }

    let address: String
    let port: UInt16
    let tlsCertFile: String?
    let tlsKeyFile: String?
    let clientCaFile: String?
    let policy: String?
    let metricsAddress: String
    let logLevel: Logger.Level
    let logFormat: LogFormat
    let maxRequestBodyBytes: Int
    let maxHeaderBytes: Int
    let maxConnections: Int
    let requestHeaderTimeout: String
    let requestBodyTimeout: String
    let idleTimeout: String
    let shutdownGracePeriod: String
    let certificateCheckInterval: String
    let eventLoops: Int?
    let disableHttp2: Bool
    let setup: WebhookSetupOptions
    let reconciler: ReconcilerOptions

    init(_ arguments: ParsedArguments) throws {
        address = try arguments.value(Flags.address)
        port = try arguments.value(Flags.port)
        tlsCertFile = try arguments.valueIfGiven(Flags.tlsCertFile)
        tlsKeyFile = try arguments.valueIfGiven(Flags.tlsKeyFile)
        clientCaFile = try arguments.valueIfGiven(Flags.clientCaFile)
        policy = try arguments.valueIfGiven(Flags.policy)
        metricsAddress = try arguments.value(Flags.metricsAddress)
        logLevel = try arguments.value(Flags.logLevel)
        logFormat = try arguments.value(Flags.logFormat)
        maxRequestBodyBytes = try arguments.value(Flags.maxRequestBodyBytes)
        maxHeaderBytes = try arguments.value(Flags.maxHeaderBytes)
        maxConnections = try arguments.value(Flags.maxConnections)
        requestHeaderTimeout = try arguments.value(Flags.requestHeaderTimeout)
        requestBodyTimeout = try arguments.value(Flags.requestBodyTimeout)
        idleTimeout = try arguments.value(Flags.idleTimeout)
        shutdownGracePeriod = try arguments.value(Flags.shutdownGracePeriod)
        certificateCheckInterval = try arguments.value(Flags.certificateCheckInterval)
        eventLoops = try arguments.valueIfGiven(Flags.eventLoops)
        disableHttp2 = arguments.isSet(Flags.disableHttp2)
        setup = try WebhookSetupOptions(arguments)
        reconciler = try ReconcilerOptions(arguments)
        try validate()
    }

    func validate() throws {
        guard (tlsCertFile == nil) == (tlsKeyFile == nil) else {
            throw UsageError("--tls-cert-file and --tls-key-file go together")
        }
        for (flag, value) in [("--request-header-timeout", requestHeaderTimeout), ("--request-body-timeout", requestBodyTimeout),
                              ("--idle-timeout", idleTimeout), ("--shutdown-grace-period", shutdownGracePeriod),
                              ("--certificate-check-interval", certificateCheckInterval)] where parseGoDuration(value) == nil {
            throw UsageError("\(flag): \"\(value)\" is not a duration such as 10s, 1m30s or 500ms")
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
        configuration.timeouts.requestHeader = parseGoDuration(requestHeaderTimeout)!
        configuration.timeouts.requestBody = parseGoDuration(requestBodyTimeout)!
        configuration.timeouts.idle = parseGoDuration(idleTimeout)!
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
        let policyInterval = parseGoDuration(certificateCheckInterval)!
        let shutdownGrace = parseGoDuration(shutdownGracePeriod)!
        var components: [any Supervised] = [
            SupervisedCalls("event loops", start: {}, stop: { group.stopAndWait() }),
            SupervisedCalls("policy watcher", start: { if policy != nil { policySource.startWatching(interval: policyInterval) } },
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
            throw UsageError("--webhook-url registers the webhook in a cluster, and none is configured: pass --kubeconfig")
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
                throw UsageError("the self-managed serving certificate (--tls-secret) is kept in the cluster, and none is configured: pass --kubeconfig")
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
        return ServingCertificateSetup(serving: serving, source: source, watchInterval: parseGoDuration(certificateCheckInterval)!,
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
        bundle.startWatching(interval: parseGoDuration(certificateCheckInterval)!)
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
        guard !hosts.isEmpty else { throw UsageError("--address names no address") }
        do {
            return try hosts.map { try SocketAddress(host: $0, port: port) }
        } catch {
            throw UsageError("--address: \(error)")
        }
    }

    private func metricsListenAddress() throws -> SocketAddress? {
        if metricsAddress == "0" || metricsAddress.isEmpty { return nil }
        guard let colon = metricsAddress.lastIndex(of: ":"), let port = UInt16(metricsAddress[metricsAddress.index(after: colon)...]) else {
            throw UsageError("--metrics-address must be HOST:PORT (such as 127.0.0.1:9090 or [::1]:9090), or 0")
        }
        do {
            return try SocketAddress(host: String(metricsAddress[..<colon]), port: port)
        } catch {
            throw UsageError("--metrics-address: \(error)")
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
        if let watchInterval { serving.startWatching(interval: watchInterval) }
    }

    /// Stops watching files and renewing, and joins what did it; the certificate in use stays.
    func stopKeeping() {
        selfManaged?.stop()
        registeredBundle?.stopWatching()
        serving.stopWatching()
    }
}
