import CertgatePKI
import CertgateLocking
import CertgateMetrics
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What the reconciler reports to Prometheus.
public struct ReconcilerMetrics: Sendable {
    let reconciles: Counter
    let issuanceSeconds: Histogram
    let events: Counter
    let certificates: CertificateTracker
    /// Failures that stopped progress (a reconcile, a list or watch), by the API server's reason.
    public let failures: Counter

    /// Registers the families; `queueDepth` is read at scrape time.
    public init(registry: MetricsRegistry, queueDepth: @escaping @Sendable () -> Int) {
        reconciles = registry.counter("certgate_reconciles_total", help: "Reconcile steps, by result (done, retry).", labels: ["result"])
        issuanceSeconds = registry.histogram("certgate_issuance_duration_seconds", help: "Time to generate a key and sign a certificate.",
                                             buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5])
        events = registry.counter("certgate_events_total", help: "Events written, by type and reason.", labels: ["type", "reason"])
        failures = registry.counter("certgate_failures_total",
                                    help: "Reconciles and lists or watches that failed, by where (reconcile, informer) and reason (Forbidden, Timeout, ...).",
                                    labels: ["component", "reason"])
        let certificates = CertificateTracker()
        self.certificates = certificates
        registry.computedGauge("certgate_reconcile_queue_depth", help: "Pki keys waiting for a worker.") { [([], Double(queueDepth()))] }
        registry.computedGauge("certgate_certificates", help: "Certificates issued and in use, by issuer.", labels: ["issuer"]) {
            certificates.countByIssuer().map { ([$0.key], Double($0.value)) }
        }
        registry.computedGauge("certgate_certificate_earliest_expiry_seconds",
                               help: "Seconds until the first of the certificates in use expires (absent when there is none).") {
            certificates.earliestExpiry().map { [([], Double($0 - Int64(time(nil))))] } ?? []
        }
    }
}

/// The certificates in use, by Pki key, for the gauges.
final class CertificateTracker: Sendable {
    private let entries = Locked<[String: (issuer: String, notAfter: Int64)]>([:])

    func set(_ key: String, issuer: String, notAfter: Int64) { entries.withLock { $0[key] = (issuer, notAfter) } }
    func remove(_ key: String) { _ = entries.withLock { $0.removeValue(forKey: key) } }

    func countByIssuer() -> [String: Int] {
        entries.withLock { entries in entries.values.reduce(into: [:]) { $0[$1.issuer, default: 0] += 1 } }
    }

    func earliestExpiry() -> Int64? { entries.withLock { $0.values.map(\.notAfter).min() } }
}
