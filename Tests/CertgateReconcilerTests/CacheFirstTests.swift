import CertgateCrypto
import CertgateKube
import CertgateKubeTesting
import CertgateMetrics
import CertgatePKI
import CertgateTestSupport
import Logging
@testable import CertgateReconciler
import Foundation
import Testing

/// A term that has brought `count` new Pkis in app1 to Ready and settled, and the API
/// server's request log up to then.
private struct SettledTerm {
    let rig: Rig
    let term: LeadershipTerm
    let count: Int
    /// Where the term's requests begin in the API server's log.
    let firstRequestOfTheTerm: Int

    init(count: Int) throws {
        rig = try Rig()
        self.count = count
        for index in 0..<count { try rig.createPki("pki-\(index)") }
        firstRequestOfTheTerm = rig.api.requestLog.count
        term = LeadershipTerm(client: rig.client, reconciler: rig.reconciler,
                              configuration: TermConfiguration(workers: 4, rateLimiter: RetryRateLimiter(baseDelay: 0.01, maxDelay: 1),
                                                               asynchronousEvents: false))
        try term.start()
    }

    func stop() {
        term.stop()
        rig.api.stop()
    }

    /// The resourceVersions the API server holds for the Pkis and their Secrets.
    func storedVersions(_ resource: Resource) -> [String: String] {
        Dictionary(uniqueKeysWithValues: (0..<count).compactMap { index -> (String, String)? in
            let metadata = rig.api.object(resource, namespace: "app1", name: "pki-\(index)")?["metadata"] as? [String: Any]
            return (metadata?["resourceVersion"] as? String).map { ("app1/pki-\(index)", $0) }
        })
    }

    /// Ready Pkis as the API server holds them (read without a request).
    func readyInStore() -> Int {
        (0..<count).filter { index in
            let status = rig.api.object(.pkis, namespace: "app1", name: "pki-\(index)")?["status"] as? [String: Any]
            return (status?["conditions"] as? [[String: Any]])?.contains { $0["type"] as? String == "Ready" && $0["status"] as? String == "True" } == true
        }.count
    }

    /// Waits until every Pki is Ready and the term has nothing left to do.
    func settle() -> Bool {
        waitUntil(60) {
            readyInStore() == count && term.isSettled(pkis: storedVersions(.pkis), secrets: storedVersions(.secrets))
        }
    }

    /// "VERB resource" of each request since the `start`th (the test's own included: the
    /// tests make none while a count matters, but for the Pkis they create first).
    func requests(since start: Int) -> [String: Int] {
        rig.api.requestCounts(since: start)
    }
}

@Suite struct CacheFirstTests {
    /// A new Pki costs its Secret's create, its status write and its Event, and nothing
    /// else: the Pki, the CA and the Secret are read from the term's caches, and the watch
    /// events of certgate's own writes wake no second pass that writes.
    @Test func aNewPkiCostsItsSecretItsStatusAndItsEvent() throws {
        let count = 40
        let settled = try SettledTerm(count: count)
        defer { settled.stop() }
        #expect(settled.settle())
        let requests = settled.requests(since: settled.firstRequestOfTheTerm)
        #expect(requests["POST secrets"] == count, "\(requests)")
        #expect(requests["PUT pkis/status"] == count, "\(requests)")
        #expect(requests["POST events"] == count, "\(requests)")
        #expect(requests["GET secrets/one"] == 1, "the CA Secret, read once for its data (it is not certgate's): \(requests)")
        let other = requests.filter { !["POST secrets", "PUT pkis/status", "POST events", "GET secrets/one"].contains($0.key) }
        // The term's lists and watches: the collections, never one object.
        #expect(other.keys.allSatisfy { $0.hasPrefix("GET ") && !$0.contains("/") }, "\(requests)")
    }

    /// Once settled, a pass over every up-to-date Pki (what a resync or a policy change
    /// runs) sends no request at all, and the CA was parsed once for all of them.
    @Test func anUpToDatePkiCostsNoRequest() throws {
        let count = 40
        let settled = try SettledTerm(count: count)
        defer { settled.stop() }
        #expect(settled.settle())
        let before = settled.rig.api.requestLog.count
        let passes = settled.term.reconcileCount
        settled.term.requeueAll()
        #expect(waitUntil(30) { settled.term.reconcileCount - passes >= count && settled.settle() })
        #expect(settled.requests(since: before).isEmpty, "\(settled.requests(since: before))")
        #expect(settled.term.authorityParseCount == 1, "the CA is parsed once per resourceVersion of its Secret")
    }

    /// A policy change queues every Pki at once: none waits behind the failure rate
    /// limiter (which would let 100 through, then 10 a second).
    @Test func aPolicyChangeQueuesEveryPkiAtOnce() throws {
        let count = 150
        let settled = try SettledTerm(count: count)
        defer { settled.stop() }
        #expect(settled.settle())
        let passes = settled.term.reconcileCount
        settled.term.requeueAll()
        // Each key is queued, in a worker's hands or done; read in the order keys move.
        let queued = settled.term.queueDepth
        let inHand = settled.term.inProgress
        let done = settled.term.reconcileCount - passes
        #expect(queued + inHand + done >= count, "queued \(queued), in progress \(inHand), done \(done)")
    }

    /// A CA rotation is seen by the watch on the issuer's Secret: every Pki is issued
    /// again from the new CA, which is parsed once for all of them.
    @Test func aRotatedCAIsParsedOnceAndUsedForEveryPki() throws {
        let count = 20
        let settled = try SettledTerm(count: count)
        defer { settled.stop() }
        #expect(settled.settle())
        let rotated = try platformCA()
        var current = try settled.rig.client.get(.secrets, namespace: "certgate", name: "certgate-ca", as: Secret.self)
        current.data = rotated.data
        _ = try settled.rig.client.update(.secrets, namespace: "certgate", name: "certgate-ca", current)
        let newCA = try Certificate(pem: rotated.bytes("tls.crt")!)
        func signedByNewCA() -> Int {
            (try? ownedSecrets(settled.rig.client))?.filter { secret in
                (try? Certificate(pem: secret.bytes("tls.crt") ?? []))?.isSigned(by: newCA) == true
            }.count ?? 0
        }
        #expect(waitUntil(60) { signedByNewCA() == count && settled.settle() })
        #expect(settled.term.authorityParseCount == 2, "once per resourceVersion: the first CA, then the rotated one")
    }

    /// The caches hold what certgate wrote, but a Secret changed behind its back (its data
    /// edited, its label removed, which takes it out of the managed cache) is still seen
    /// and put right.
    @Test func aSecretChangedBehindCertgatesBackIsRepaired() throws {
        let settled = try SettledTerm(count: 3)
        defer { settled.stop() }
        #expect(settled.settle())
        let client = settled.rig.client
        let original = try client.get(.secrets, namespace: "app1", name: "pki-0", as: Secret.self)
        _ = try client.mergePatch(.secrets, namespace: "app1", name: "pki-0",
                                  patch: Array(#"{"data":{"tls.crt":"bm90IGEgY2VydGlmaWNhdGU="}}"#.utf8), as: Secret.self)
        #expect(waitUntil(30) {
            let secret = try? client.get(.secrets, namespace: "app1", name: "pki-0", as: Secret.self)
            return secret.flatMap { try? Certificate(pem: $0.bytes("tls.crt") ?? []) } != nil
                && secret?.bytes("tls.crt") != original.bytes("tls.crt")
        }, "the edited certificate is issued again")

        _ = try client.mergePatch(.secrets, namespace: "app1", name: "pki-1",
                                  patch: Array(#"{"metadata":{"labels":{"certgate.dev/pki":null}}}"#.utf8), as: Secret.self)
        #expect(waitUntil(30) {
            (try? client.get(.secrets, namespace: "app1", name: "pki-1", as: Secret.self))?.metadata.labels?[PkiReconciler.pkiLabel] == "pki-1"
        }, "the label is put back")
        #expect(settled.settle())
    }

    /// With --bootstrap-ca and no CA yet, the term creates it once, before any worker
    /// starts: eight workers never race to create it, and no pass fails for it.
    @Test func theCAIsBootstrappedOnceBeforeTheWorkersStart() throws {
        let rig = try Rig(bootstrapCA: false)
        defer { rig.api.stop() }
        let count = 30
        for index in 0..<count { try rig.createPki("pki-\(index)") }
        let failures = Shared<[String]>([])
        let reporter = FailureReporter(logger: Logger(label: "test") { _ in MemoryLogHandler(lines: failures) }) { _ in }
        let reconciler = PkiReconciler(policy: { examplePolicy }, bootstrapCA: true, failures: reporter)
        let start = rig.api.requestLog.count
        let term = LeadershipTerm(client: rig.client, reconciler: reconciler,
                                  configuration: TermConfiguration(workers: 8, asynchronousEvents: false), failures: reporter)
        try term.start()
        defer { term.stop() }
        #expect(waitUntil(60) { (try? readyCount(rig.client)) == count })
        let creates = rig.api.requestLog.dropFirst(start).filter { $0.method == "POST" && $0.path == "/api/v1/namespaces/certgate/secrets" }
        #expect(creates.count == 1, "the CA is created once")
        #expect(failures.value.isEmpty, "no pass failed: \(failures.value)")
    }

    /// The per-Pki series are the leader's: a term that ends takes them with it.
    @Test func aTermThatEndsTakesItsPerPkiSeriesWithIt() throws {
        let rig = try Rig()
        defer { rig.api.stop() }
        try rig.createPki("web")
        let registry = MetricsRegistry()
        let reconciler = PkiReconciler(policy: { examplePolicy }, metrics: ReconcilerMetrics(registry: registry) { 0 })
        let term = LeadershipTerm(client: rig.client, reconciler: reconciler, configuration: TermConfiguration(workers: 1, asynchronousEvents: false))
        try term.start()
        let series = #"certgate_certificate_ready_status{namespace="app1",name="web",issuer="default",condition="True"} 1"#
        #expect(waitUntil(30) { registry.exposition().contains(series) })
        #expect(registry.exposition().contains(#"certgate_issuer_expiration_timestamp_seconds{issuer="default"} "#))
        term.stop()
        let after = registry.exposition()
        #expect(!after.contains("name=\"web\"") && !after.contains("certgate_issuer_expiration_timestamp_seconds{"), "\(after)")
    }

    /// The term caches Pkis without kubectl's last-applied copy of each, which nothing reads.
    @Test func theTermCachesPkisWithoutTheirLastAppliedCopy() throws {
        var pki = Pki(metadata: ObjectMeta(name: "web", namespace: "app1",
                                           annotations: [TermCaches.lastAppliedAnnotation: "{\"spec\":{}}", PkiReconciler.renewAnnotation: "1"]),
                      spec: PkiSpec(serviceName: "app1"))
        #expect(TermCaches.withoutLastApplied(pki).metadata.annotations == [PkiReconciler.renewAnnotation: "1"])
        pki.metadata.annotations = [TermCaches.lastAppliedAnnotation: "{}"]
        #expect(TermCaches.withoutLastApplied(pki).metadata.annotations == nil)
    }
}
