import CertgateMetrics

/// The metric families a server reports, labelled by which server (`webhook`, `metrics`).
public struct ServerMetrics: Sendable {
    public let requests: Counter
    public let requestDuration: Histogram
    public let requestsInFlight: Gauge
    public let openConnections: Gauge
    public let rejectedConnections: Counter
    public let tlsHandshakes: Counter
    public let tlsHandshakeFailures: Counter
    public let acceptPauses: Counter

    public init(registry: MetricsRegistry) {
        requests = registry.counter("certgate_http_requests_total",
                                    help: "HTTP requests answered, by server, route and status code.",
                                    labels: ["server", "path", "code"])
        requestDuration = registry.histogram("certgate_http_request_duration_seconds",
                                             help: "Time from a complete request head to the answer being queued, by server, route and status code.",
                                             labels: ["server", "path", "code"], buckets: latencyBuckets)
        requestsInFlight = registry.gauge("certgate_http_requests_in_flight",
                                          help: "Requests whose head was read and whose answer is not yet queued.",
                                          labels: ["server"])
        openConnections = registry.gauge("certgate_http_open_connections",
                                         help: "Open client connections.", labels: ["server"])
        rejectedConnections = registry.counter("certgate_http_rejected_connections_total",
                                               help: "Connections closed at once because the server was at its connection limit.",
                                               labels: ["server"])
        tlsHandshakes = registry.counter("certgate_tls_handshakes_total",
                                         help: "TLS handshakes completed, by server and protocol version.",
                                         labels: ["server", "version"])
        tlsHandshakeFailures = registry.counter("certgate_tls_handshake_failures_total",
                                                help: "TLS handshakes that failed or timed out.", labels: ["server"])
        acceptPauses = registry.counter("certgate_http_accept_pauses_total",
                                        help: "Times accepting paused for half a second because the process was out of file descriptors.",
                                        labels: ["server"])
    }
}

/// Metrics of the serving certificate.
public struct CertificateMetrics: Sendable {
    public let reloads: Counter
    public let expiry: Gauge

    public init(registry: MetricsRegistry) {
        reloads = registry.counter("certgate_tls_certificate_reloads_total",
                                   help: "Attempts to load a changed serving certificate, by result (success, failure).",
                                   labels: ["result"])
        expiry = registry.gauge("certgate_tls_certificate_expiry_timestamp_seconds",
                                help: "When the serving certificate in use expires, in seconds since 1970.")
    }
}

/// The server's metric children for its own `server` label, looked up once.
struct ResolvedServerMetrics: Sendable {
    let server: String
    let families: ServerMetrics
    let openConnections: Gauge.Child
    let inFlight: Gauge.Child
    let rejected: Counter.Child
    let handshakeFailures: Counter.Child
    let acceptPauses: Counter.Child

    init(_ families: ServerMetrics, server: String) {
        self.server = server
        self.families = families
        openConnections = families.openConnections.labels(server)
        inFlight = families.requestsInFlight.labels(server)
        rejected = families.rejectedConnections.labels(server)
        handshakeFailures = families.tlsHandshakeFailures.labels(server)
        acceptPauses = families.acceptPauses.labels(server)
    }

    func handshakes(version: String) -> Counter.Child { families.tlsHandshakes.labels(server, version) }
    func requests(path: String, code: String) -> Counter.Child { families.requests.labels(server, path, code) }
    func duration(path: String, code: String) -> Histogram.Child { families.requestDuration.labels(server, path, code) }
}

struct RequestMetricsKey: Hashable {
    let path: String
    let status: Int
}
