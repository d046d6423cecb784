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
        // One series per Pki, as cert-manager's certmanager_certificate_* are: dropped when the
        // Pki is deleted or this replica stops leading.
        let pkiLabels = ["namespace", "name", "issuer"]
        registry.computedGauge("certgate_certificate_expiration_timestamp_seconds",
                               help: "When the certificate in a Pki's Secret expires, in seconds since 1970.", labels: pkiLabels) {
            certificates.pkis().compactMap { entry in entry.state.notAfter.map { ([entry.namespace, entry.name, entry.state.issuer], Double($0)) } }
        }
        registry.computedGauge("certgate_certificate_renewal_timestamp_seconds",
                               help: "When certgate renews the certificate in a Pki's Secret, in seconds since 1970.", labels: pkiLabels) {
            certificates.pkis().compactMap { entry in entry.state.renewal.map { ([entry.namespace, entry.name, entry.state.issuer], Double($0)) } }
        }
        registry.computedGauge("certgate_certificate_ready_status",
                               help: "A Pki's Ready condition: 1 for its status (True, False or Unknown), 0 for the others.",
                               labels: pkiLabels + ["condition"]) {
            certificates.pkis().flatMap { entry in
                ["True", "False", "Unknown"].map { ([entry.namespace, entry.name, entry.state.issuer, $0], entry.state.ready == $0 ? 1.0 : 0.0) }
            }
        }
        registry.computedGauge("certgate_issuer_expiration_timestamp_seconds",
                               help: "When each issuer's signing CA certificate expires, in seconds since 1970.", labels: ["issuer"]) {
            certificates.issuerExpirations().map { ([$0.key], Double($0.value)) }
        }
    }
}

/// What the gauges show, by Pki key and by issuer.
final class CertificateTracker: Sendable {
    struct PkiState: Sendable {
        var issuer: String
        var ready: String
        /// The certificate in use (nil: none, or not known).
        var notAfter: Int64?
        var renewal: Int64?
    }

    private let entries = Locked<[String: PkiState]>([:])
    private let issuers = Locked<[String: Int64]>([:])

    /// A Pki with a certificate in use: Ready=True.
    func set(_ key: String, issuer: String, notAfter: Int64, renewal: Int64? = nil) {
        entries.withLock { $0[key] = PkiState(issuer: issuer, ready: "True", notAfter: notAfter, renewal: renewal) }
    }

    /// A Pki whose Ready condition is now `ready` (False: refused or waiting); the certificate
    /// it had stays counted, since its Secret still holds it.
    func setReady(_ key: String, issuer: String, ready: String) {
        entries.withLock { entries in
            var state = entries[key] ?? PkiState(issuer: issuer, ready: ready)
            state.issuer = issuer
            state.ready = ready
            entries[key] = state
        }
    }

    func remove(_ key: String) { _ = entries.withLock { $0.removeValue(forKey: key) } }

    func setIssuer(_ issuer: String, notAfter: Int64) { issuers.withLock { $0[issuer] = notAfter } }

    /// This replica stopped leading: another one reports from now on.
    func removeAll() {
        entries.withLock { $0.removeAll() }
        issuers.withLock { $0.removeAll() }
    }

    func countByIssuer() -> [String: Int] {
        entries.withLock { entries in entries.values.filter { $0.notAfter != nil }.reduce(into: [:]) { $0[$1.issuer, default: 0] += 1 } }
    }

    func earliestExpiry() -> Int64? { entries.withLock { $0.values.compactMap(\.notAfter).min() } }

    func pkis() -> [(namespace: String, name: String, state: PkiState)] {
        entries.withLock { entries in
            entries.sorted { $0.key < $1.key }.map { key, state in
                let parts = key.split(separator: "/", maxSplits: 1).map(String.init)
                return (parts.first ?? "", parts.count > 1 ? parts[1] : "", state)
            }
        }
    }

    func issuerExpirations() -> [String: Int64] { issuers.withLock { $0 } }
}
