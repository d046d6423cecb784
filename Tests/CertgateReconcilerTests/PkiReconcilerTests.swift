import CertgateCrypto
import CertgateKube
import CertgateKubeTesting
import CertgateMetrics
import CertgatePKI
@testable import CertgateReconciler
import CertgateTestSupport
import Foundation
import Testing

let examplePolicy = Policy(namespaces: ["app1": ["app1", "app2"]], maximumDuration: 8760 * 3600, defaultDuration: 2160 * 3600)

/// A test API server, a client, and a reconciler with a clock the test moves.
struct Rig {
    let api: TestAPIServer
    let client: KubeClient
    let clock: ManualClock
    let reconciler: PkiReconciler
    /// Reads straight from the test API server, so each pass sees what the test just wrote.
    let context: ReconcileContext

    init(bootstrapCA: Bool = true) throws {
        api = try TestAPIServer()
        // Unpaced: these tests are about the reconciler, and count its requests themselves.
        client = try KubeClient(configuration: api.clusterConfiguration(), limits: KubeClientLimits(qps: 100_000, burst: 100_000))
        let clock = ManualClock(start: Double(Int64(Date().timeIntervalSince1970)))
        self.clock = clock
        reconciler = PkiReconciler(policy: { examplePolicy }, bootstrapCA: bootstrapCA, clock: { Int64(clock.read()) })
        context = .live(client: client, events: EventRecorder(client: client, clock: { clock.read() }))
        // As a term does when it starts, before any Pki is looked at.
        try reconciler.bootstrapAuthorities(in: context)
    }

    @discardableResult
    func createPki(_ name: String = "app1-pki", serviceName: String = "app1", secretName: String? = nil) throws -> Pki {
        try client.create(.pkis, namespace: "app1", Pki(
            metadata: ObjectMeta(name: name, namespace: "app1"),
            spec: PkiSpec(serviceName: serviceName, secretName: secretName, dnsNames: ["\(serviceName).app1.svc"], duration: "2160h",
                          privateKey: PrivateKeySpec(algorithm: "ECDSA", size: 256), usages: ["server auth"])))
    }

    func pki(_ name: String = "app1-pki") throws -> Pki { try client.get(.pkis, namespace: "app1", name: name, as: Pki.self) }
    func secret(_ name: String = "app1-pki") throws -> Secret { try client.get(.secrets, namespace: "app1", name: name, as: Secret.self) }
    func reconcile(_ name: String = "app1-pki") -> PkiReconciler.Outcome { reconciler.reconcile(namespace: "app1", name: name, in: context) }

    /// "Type Reason: message" of the Events about `kind` `name`, oldest first.
    func events(about kind: String, _ name: String) throws -> [String] {
        try client.list(.events, namespace: "app1", options: ListOptions(fieldSelector: "involvedObject.kind=\(kind),involvedObject.name=\(name)"),
                        of: Event.self).items.sorted { ($0.metadata.name ?? "") < ($1.metadata.name ?? "") }
            .map { "\($0.type ?? "") \($0.reason ?? ""): \($0.message ?? "")" }
    }

    func ready(_ name: String = "app1-pki") throws -> Pki.Condition? {
        try pki(name).status?.conditions?.first { $0.type == "Ready" }
    }
}

@Suite struct PkiReconcilerTests {
    /// A foreground delete (what GitOps tools send) leaves the Pki in place with a
    /// deletionTimestamp while the garbage collector removes its Secret; writing the Secret
    /// again would loop with the collector for ever.
    @Test func aPkiBeingDeletedIsLeftAlone() throws {
        let rig = try Rig()
        defer { rig.api.stop() }
        try rig.createPki()
        try rig.client.delete(.pkis, namespace: "app1", name: "app1-pki", propagationPolicy: "Foreground")
        let deleting = try rig.pki()
        #expect(deleting.metadata.deletionTimestamp != nil)
        #expect(rig.reconcile() == .done(requeueAfter: nil))
        #expect(throws: APIStatus.self) { try rig.secret() }
        #expect(try rig.events(about: "Pki", "app1-pki").isEmpty)
    }

    @Test func issuesASecretTheApplicationCanUseAndSaysSoOnThePkiAndItsPods() throws {
        let rig = try Rig()
        defer { rig.api.stop() }
        let pki = try rig.createPki()
        _ = try rig.client.create(.pods, namespace: "app1", try JSONDecoder().decode(Pod.self, from: Data(
            #"{"metadata":{"name":"app1","namespace":"app1"},"spec":{"volumes":[{"name":"tls","secret":{"secretName":"app1-pki"}}]}}"#.utf8)))

        guard case .done(let requeue?) = rig.reconcile() else { Issue.record("not done"); return }
        #expect(abs(requeue - 1440 * 3600) < 10, "renewal at two thirds of 2160h")

        let secret = try rig.secret()
        #expect(secret.type == "kubernetes.io/tls")
        #expect(secret.metadata.ownerReferences == [OwnerReference(apiVersion: "certgate.dev/v1", kind: "Pki", name: "app1-pki", uid: pki.metadata.uid!)])
        #expect(secret.metadata.labels?["certgate.dev/pki"] == "app1-pki")
        let directory = TemporaryDirectory()
        try Data(secret.bytes("tls.crt")!).write(to: URL(fileURLWithPath: directory.file("tls.crt")))
        try Data(secret.bytes("ca.crt")!).write(to: URL(fileURLWithPath: directory.file("ca.crt")))
        #expect(try runProcess("openssl", ["verify", "-CAfile", directory.file("ca.crt"), directory.file("tls.crt")]).stdout.contains("OK"))
        let leaf = try Certificate(pem: secret.bytes("tls.crt")!)
        #expect(leaf.matches(try PrivateKey(pem: secret.bytes("tls.key")!)))
        #expect(rig.api.object(.secrets, namespace: "certgate", name: "certgate-ca") != nil, "the issuer's CA was bootstrapped")

        let status = try rig.pki().status
        #expect(status?.serialNumber == leaf.serialNumberHex)
        #expect(status?.secretName == "app1-pki")
        #expect(status?.observedGeneration == 1)
        #expect(try rig.ready()?.status == "True")
        let issued = try rig.events(about: "Pki", "app1-pki")
        #expect(issued.count == 1 && issued[0].hasPrefix("Normal Issued: Issued certificate for app1.app1.svc (serial \(leaf.serialNumberHex))"), "\(issued)")
        #expect(try rig.events(about: "Pod", "app1").first?.hasPrefix("Normal Issued: Pki app1-pki: Issued certificate") == true)
    }

    @Test func reportsReconcilesIssuanceCertificatesExpiryAndEvents() throws {
        let api = try TestAPIServer()
        defer { api.stop() }
        let client = try KubeClient(configuration: api.clusterConfiguration())
        let registry = MetricsRegistry()
        let metrics = ReconcilerMetrics(registry: registry) { 7 }
        let reconciler = PkiReconciler(policy: { examplePolicy }, bootstrapCA: true, metrics: metrics)
        let context = ReconcileContext.live(client: client, events: EventRecorder(client: client))
        try reconciler.bootstrapAuthorities(in: context)
        _ = try client.create(.pkis, namespace: "app1", Pki(metadata: ObjectMeta(name: "app1-pki", namespace: "app1"),
                                                                    spec: PkiSpec(serviceName: "app1", dnsNames: ["app1.app1.svc"], duration: "2160h")))
        _ = reconciler.reconcile(namespace: "app1", name: "app1-pki", in: context)
        let text = registry.exposition()
        #expect(text.contains("certgate_reconciles_total{result=\"done\"} 1\n"), "\(text)")
        #expect(text.contains("certgate_issuance_duration_seconds_count 1\n"))
        #expect(text.contains("certgate_events_total{type=\"Normal\",reason=\"Issued\"} 1\n"))
        #expect(text.contains("certgate_certificates{issuer=\"default\"} 1\n"))
        #expect(text.contains("certgate_reconcile_queue_depth 7\n"))
        let expiry = text.split(separator: "\n").first { $0.hasPrefix("certgate_certificate_earliest_expiry_seconds ") }
        #expect(expiry.flatMap { Double($0.split(separator: " ")[1]) }.map { abs($0 - 2160 * 3600) < 60 } == true, "\(String(describing: expiry))")
    }

    @Test func leavesAGoodCertificateAloneThenRenewsItAtRenewalTime() throws {
        let rig = try Rig()
        defer { rig.api.stop() }
        try rig.createPki()
        _ = rig.reconcile()
        let first = try rig.pki().status?.serialNumber
        _ = rig.reconcile()
        #expect(try rig.pki().status?.serialNumber == first, "nothing changed, nothing issued")
        rig.clock.advance(1441 * 3600)
        _ = rig.reconcile()
        let renewed = try rig.pki().status?.serialNumber
        #expect(renewed != first)
        #expect(try rig.events(about: "Pki", "app1-pki").last?.hasPrefix("Normal Renewed: Renewed certificate") == true)
    }

    @Test func aSpecChangeIssuesAgainAndADeletedSecretIsRestored() throws {
        let rig = try Rig()
        defer { rig.api.stop() }
        try rig.createPki()
        _ = rig.reconcile()
        var pki = try rig.pki()
        let first = pki.status?.serialNumber
        pki.spec.duration = "720h"
        _ = try rig.client.update(.pkis, namespace: "app1", name: "app1-pki", pki)
        _ = rig.reconcile()
        #expect(try rig.pki().status?.serialNumber != first)
        #expect(try rig.pki().status?.observedGeneration == 2)
        let leaf = try Certificate(pem: try rig.secret().bytes("tls.crt")!)
        #expect(leaf.notAfter - leaf.notBefore == 720 * 3600 + 300)

        try rig.client.delete(.secrets, namespace: "app1", name: "app1-pki")
        _ = rig.reconcile()
        #expect(try rig.secret().bytes("tls.crt") != nil, "restored")
    }

    @Test func anInvalidSpecIsReportedWithTheWebhooksMessage() throws {
        let rig = try Rig()
        defer { rig.api.stop() }
        try rig.createPki(serviceName: "appp1")
        #expect(rig.reconcile() == .done(requeueAfter: nil))
        let message = "spec.serviceName: \"appp1\" is not in the allowed names [app1 app2] for namespace app1 (did you mean \"app1\"?)"
        #expect(try rig.ready()?.status == "False")
        #expect(try rig.ready()?.reason == "InvalidSpec")
        #expect(try rig.ready()?.message == message)
        #expect(try rig.events(about: "Pki", "app1-pki") == ["Warning InvalidSpec: \(message)"])
        #expect(rig.api.object(.secrets, namespace: "app1", name: "app1-pki") == nil)
    }

    /// A Pki stored with a field of the wrong type (no webhook, or one that failed open) is
    /// read by the same reader as admission's: the field is named and the rest is read, so
    /// the owner learns what to fix instead of the Pki failing to decode at all.
    @Test func aWronglyTypedFieldStoredWithoutTheWebhookIsReportedByItsPath() throws {
        let rig = try Rig()
        defer { rig.api.stop() }
        rig.api.seed(["apiVersion": "certgate.dev/v1", "kind": "Pki", "metadata": ["name": "app1-pki", "namespace": "app1", "generation": 1],
                      "spec": ["serviceName": "app1", "dnsNames": ["app1.app1.svc"], "duration": 2160]])
        let stored = try rig.pki()
        #expect(stored.spec.serviceName == "app1", "the rest of the spec is read")
        #expect(stored.problems.map(\.path) == ["spec.duration"])
        #expect(rig.reconcile() == .done(requeueAfter: nil))
        let message = "spec.duration: expected a string, found a number"
        #expect(try rig.ready()?.reason == "InvalidSpec")
        #expect(try rig.ready()?.message == message)
        #expect(try rig.events(about: "Pki", "app1-pki") == ["Warning InvalidSpec: \(message)"])
        #expect(rig.api.object(.secrets, namespace: "app1", name: "app1-pki") == nil)
    }

    @Test func theTypoAdmittedWithoutAWebhookIsReportedOnThePodAndRepeatsCountUp() throws {
        let rig = try Rig()
        defer { rig.api.stop() }
        try rig.createPki(serviceName: "appp1")
        _ = try rig.client.create(.pods, namespace: "app1", try JSONDecoder().decode(Pod.self, from: Data(
            #"{"metadata":{"name":"app1","namespace":"app1"},"spec":{"volumes":[{"name":"all","projected":{"sources":[{"secret":{"name":"app1-pki"}}]}}]}}"#.utf8)))
        for _ in 0..<3 {
            _ = rig.reconcile()
            rig.clock.advance(60)
        }
        let onPod = try rig.client.list(.events, namespace: "app1", options: ListOptions(fieldSelector: "involvedObject.kind=Pod,involvedObject.name=app1"),
                                        of: Event.self).items
        #expect(onPod.count == 1, "repeats raise count instead of adding Events")
        #expect(onPod.first?.count == 3)
        #expect(onPod.first?.message?.hasPrefix("Pki app1-pki: spec.serviceName: \"appp1\" is not in the allowed names") == true)
        #expect(onPod.first?.involvedObject.uid != nil)
        let onPki = try rig.client.list(.events, namespace: "app1", options: ListOptions(fieldSelector: "involvedObject.kind=Pki"), of: Event.self).items
        #expect(onPki.map(\.count) == [3])
    }

    @Test func aSecretSomeoneElseOwnsIsNeverOverwritten() throws {
        let rig = try Rig()
        defer { rig.api.stop() }
        _ = try rig.client.create(.secrets, namespace: "app1", Secret(metadata: ObjectMeta(name: "app1-tls", namespace: "app1"), data: ["x": [1]]))
        try rig.createPki(secretName: "app1-tls")
        _ = rig.reconcile()
        #expect(try rig.secret("app1-tls").data == ["x": [1]], "untouched")
        #expect(try rig.ready()?.reason == "SecretConflict")
        #expect(try rig.events(about: "Pki", "app1-pki") == ["Warning SecretConflict: Secret app1-tls already exists and is controlled by nobody; set spec.secretName to another name"])
    }

    @Test func waitsForAMissingCAAndIssuesOnceItAppears() throws {
        let rig = try Rig(bootstrapCA: false)
        defer { rig.api.stop() }
        try rig.createPki()
        #expect(rig.reconcile() == .done(requeueAfter: PkiReconciler.issuerRetrySeconds))
        #expect(try rig.ready()?.reason == "IssuerNotReady")
        #expect(try rig.events(about: "Pki", "app1-pki") == ["Warning IssuerNotReady: issuer \"default\": the CA Secret certgate/certgate-ca does not exist"])

        _ = try rig.client.create(.secrets, namespace: "certgate", try platformCA())
        _ = rig.reconcile()
        #expect(try rig.ready()?.status == "True")
        #expect(try Certificate.chain(pem: try rig.secret().bytes("tls.crt")!).last?.commonName == "platform CA")
    }

    @Test func aConflictIsRetried() throws {
        let rig = try Rig()
        defer { rig.api.stop() }
        try rig.createPki()
        rig.api.failNext(1, status: 409)
        guard case .retry = rig.reconcile() else { Issue.record("expected a retry"); return }
        guard case .done = rig.reconcile() else { Issue.record("expected done"); return }
    }

    /// The old reconciler wrote status.observedGeneration in the failing pass and then saw
    /// "no change": the new name was never issued.
    @Test func anEditFollowedByAFailingPassThenAGoodOneEndsWithTheNewNameIssued() throws {
        let rig = try Rig(bootstrapCA: false)
        defer { rig.api.stop() }
        let caSecret = try platformCA()
        _ = try rig.client.create(.secrets, namespace: "certgate", caSecret)
        try rig.createPki()
        _ = rig.reconcile()
        #expect(try rig.ready()?.status == "True")

        rig.clock.advance(60)
        try rig.client.delete(.secrets, namespace: "certgate", name: "certgate-ca")
        var pki = try rig.pki()
        pki.spec.dnsNames = ["app1.app1.svc", "app1.app1.svc.cluster.local"]
        _ = try rig.client.update(.pkis, namespace: "app1", name: "app1-pki", pki)
        #expect(rig.reconcile() == .done(requeueAfter: PkiReconciler.issuerRetrySeconds))
        #expect(try rig.ready()?.reason == "IssuerNotReady")

        rig.clock.advance(60)
        _ = try rig.client.create(.secrets, namespace: "certgate", caSecret)
        _ = rig.reconcile()
        let leaf = try Certificate(pem: try rig.secret().bytes("tls.crt")!)
        #expect(leaf.subjectAlternativeNames.dnsNames.sorted() == ["app1.app1.svc", "app1.app1.svc.cluster.local"])
        #expect(try rig.ready()?.status == "True")
        let events = try rig.events(about: "Pki", "app1-pki")
        #expect(events.contains { $0.contains("the previous one no longer matched (its DNS names") }, "\(events)")
    }

    /// A status write that conflicts after the Secret was written: the next pass finds the
    /// certificate in the Secret and writes only the status. One key, one certificate.
    @Test func aConflictOnTheStatusWriteIssuesOneKey() throws {
        let rig = try Rig()
        defer { rig.api.stop() }
        try rig.createPki()
        rig.api.failNext(1, status: 409, onlyRequestsEndingWith: "/pkis/app1-pki/status")
        guard case .retry = rig.reconcile() else { Issue.record("expected a retry after the conflict"); return }
        let key = try rig.secret().bytes("tls.key")
        #expect(try rig.ready() == nil, "the status was never written")
        guard case .done = rig.reconcile() else { Issue.record("expected done"); return }
        #expect(try rig.secret().bytes("tls.key") == key, "the same key")
        let leaf = try Certificate(pem: try rig.secret().bytes("tls.crt")!)
        #expect(try rig.pki().status?.serialNumber == leaf.serialNumberHex)
        #expect(try rig.ready()?.status == "True")
        #expect(try rig.events(about: "Pki", "app1-pki").filter { $0.hasPrefix("Normal Issued") }.count == 1)
    }

    /// A status someone cleared (or a restore from backup without it) is written again
    /// from the certificate in the Secret, without issuing.
    @Test func aLostStatusHealsFromTheSecret() throws {
        let rig = try Rig()
        defer { rig.api.stop() }
        try rig.createPki()
        _ = rig.reconcile()
        let serial = try rig.pki().status?.serialNumber
        var pki = try rig.pki()
        pki.status = Pki.Status()
        _ = try rig.client.updateStatus(.pkis, namespace: "app1", name: "app1-pki", pki)
        _ = rig.reconcile()
        #expect(try rig.pki().status?.serialNumber == serial)
        #expect(try rig.ready()?.status == "True")
    }

    /// Renewal changes tls.crt, tls.key and ca.crt and certgate's own label; what others put
    /// on the Secret stays.
    @Test func renewalKeepsWhatOthersPutOnTheSecret() throws {
        let rig = try Rig()
        defer { rig.api.stop() }
        try rig.createPki()
        _ = rig.reconcile()
        let before = try rig.secret()
        let otherOwner = #"{"apiVersion":"v1","kind":"ConfigMap","name":"keeper","uid":"0b7e7f1a-0000-4000-8000-000000000001"}"#
        let patch = #"{"metadata":{"annotations":{"reflector/allowed":"true"},"labels":{"team":"payments"},"finalizers":["example.com/keep"],"#
            + #""ownerReferences":["# + (before.metadata.ownerReferences ?? []).map { String(decoding: try! JSONEncoder().encode($0), as: UTF8.self) }
                .joined(separator: ",") + "," + otherOwner + #"]},"data":{"keystore.jks":"AQID"}}"#
        let _: Secret = try rig.client.mergePatch(.secrets, namespace: "app1", name: "app1-pki", patch: Array(patch.utf8))
        rig.clock.advance(1441 * 3600)
        _ = rig.reconcile()
        let after = rig.api.object(.secrets, namespace: "app1", name: "app1-pki") ?? [:]
        let metadata = after["metadata"] as? [String: Any] ?? [:]
        #expect((metadata["annotations"] as? [String: String])?["reflector/allowed"] == "true")
        #expect((metadata["labels"] as? [String: String])?["team"] == "payments")
        #expect((metadata["labels"] as? [String: String])?[PkiReconciler.pkiLabel] == "app1-pki")
        #expect(metadata["finalizers"] as? [String] == ["example.com/keep"])
        #expect((metadata["ownerReferences"] as? [[String: Any]])?.count == 2)
        #expect((after["data"] as? [String: String])?["keystore.jks"] == "AQID")
        #expect((after["data"] as? [String: String])?["tls.crt"] != before.data?["tls.crt"].map { Data($0).base64EncodedString() }, "renewed")
    }

    /// A CA Secret holding an intermediate and its root, as a platform run from an offline
    /// root does: leaves carry the intermediate, ca.crt is the root, and no leaf outlives
    /// the intermediate.
    @Test func anIntermediateIssuesLeavesThatVerifyAgainstTheRootAndNeverOutliveIt() throws {
        let rig = try Rig(bootstrapCA: false)
        defer { rig.api.stop() }
        let now = Int64(rig.clock.read())
        let rootKey = try PrivateKey.generate(.ecdsaP256)
        let root = try CertificateSigner.sign(CertificateTemplate(commonName: "offline root", isCertificateAuthority: true,
                                                                  notBefore: now - 86400, notAfter: now + 86400 * 3650), subjectKey: rootKey)
        let intermediateKey = try PrivateKey.generate(.ecdsaP256)
        let intermediateEnd = now + 30 * 86400
        let intermediate = try CertificateSigner.sign(CertificateTemplate(commonName: "platform intermediate", isCertificateAuthority: true,
                                                                          notBefore: now - 86400, notAfter: intermediateEnd),
                                                      subjectKey: intermediateKey, issuer: (root, rootKey))
        _ = try rig.client.create(.secrets, namespace: "certgate", Secret(
            metadata: ObjectMeta(name: "certgate-ca", namespace: "certgate"), type: "kubernetes.io/tls",
            data: ["tls.crt": Array((try intermediate.pem() + root.pem()).utf8), "tls.key": Array(try intermediateKey.pkcs8PEM().utf8)]))
        try rig.createPki()
        guard case .done(let requeue?) = rig.reconcile() else { Issue.record("not done"); return }

        let secret = try rig.secret()
        let chain = try Certificate.chain(pem: secret.bytes("tls.crt")!)
        #expect(chain.map(\.commonName) == [nil, "platform intermediate"], "the leaf, then the intermediate; not the root")
        #expect(try Certificate.chain(pem: secret.bytes("ca.crt")!).map(\.commonName) == ["offline root"])
        #expect(chain[0].notAfter == intermediateEnd, "spec.duration 2160h would outlive the intermediate")
        let life = Double(intermediateEnd - now + Issuance.backdate)
        #expect(abs(requeue - (Double(intermediateEnd - now) - life / 3)) < 60, "renewed a third of its shortened life before its end")
        #expect(try rig.events(about: "Pki", "app1-pki").contains { $0.hasPrefix("Warning DurationCapped: the certificate ends") })

        let directory = TemporaryDirectory()
        try Data(secret.bytes("ca.crt")!).write(to: URL(fileURLWithPath: directory.file("ca.crt")))
        try chain[0].pem().write(toFile: directory.file("leaf.pem"), atomically: true, encoding: .utf8)
        try chain.dropFirst().map { try $0.pem() }.joined().write(toFile: directory.file("untrusted.pem"), atomically: true, encoding: .utf8)
        let verified = try runProcess("openssl", ["verify", "-CAfile", directory.file("ca.crt"), "-untrusted", directory.file("untrusted.pem"),
                                                  directory.file("leaf.pem")])
        #expect(verified.status == 0, "\(verified.output)")
        #expect(rig.reconcile() == .done(requeueAfter: requeue), "a capped certificate is up to date, not issued again")
    }

    /// The issuer's CA is replaced: the next pass issues from the new CA, and ca.crt holds
    /// the new root and the old one until the certificate's next renewal.
    @Test func aCARotationKeepsTheOldRootInCaCrtForOneRenewal() throws {
        let rig = try Rig(bootstrapCA: false)
        defer { rig.api.stop() }
        let oldCA = try platformCA()
        _ = try rig.client.create(.secrets, namespace: "certgate", oldCA)
        try rig.createPki()
        _ = rig.reconcile()
        let oldRoot = try Certificate(pem: oldCA.bytes("tls.crt")!)

        let newCA = try platformCA()
        var current = try rig.client.get(.secrets, namespace: "certgate", name: "certgate-ca", as: Secret.self)
        current.data = newCA.data
        _ = try rig.client.update(.secrets, namespace: "certgate", name: "certgate-ca", current)
        let newRoot = try Certificate(pem: newCA.bytes("tls.crt")!)
        _ = rig.reconcile()
        var bundle = try Certificate.chain(pem: try rig.secret().bytes("ca.crt")!)
        #expect(try bundle.map { try $0.pem() } == [try newRoot.pem(), try oldRoot.pem()], "the new root first, the old one kept")
        #expect(try Certificate(pem: try rig.secret().bytes("tls.crt")!).isSigned(by: newRoot))
        #expect(try rig.ready()?.status == "True")

        rig.clock.advance(1441 * 3600)
        _ = rig.reconcile()
        bundle = try Certificate.chain(pem: try rig.secret().bytes("ca.crt")!)
        #expect(try bundle.map { try $0.pem() } == [try newRoot.pem()], "renewed: only the current root")
    }

    /// An RSA Pki without a size is admitted and issued at the same size: the policy's
    /// smallest allowed one.
    @Test func rsaWithoutASizeIsIssuedAtTheSizeAdmissionJudged() throws {
        let policy = Policy(namespaces: ["app1": ["app1"]], minimumRSASize: 3072)
        let spec = PkiSpec(serviceName: "app1", dnsNames: ["app1.app1.svc"], privateKey: PrivateKeySpec(algorithm: "RSA"))
        let judgement = judge(Pki(metadata: ObjectMeta(name: "x", namespace: "app1"), spec: spec), namespace: "app1", policy: policy)
        #expect(judgement.isAllowed, "\(judgement.message)")
        #expect(judgement.warnings.contains { $0.contains("RSA 3072") })
        #expect(Issuance.keyAlgorithm(spec.privateKey, policy: policy) == .rsa(bits: 3072))
    }
}


/// A CA Secret for the default issuer, as a platform team would create it.
func platformCA() throws -> Secret {
    let key = try PrivateKey.generate(.ecdsaP256)
    let ca = try CertificateSigner.sign(CertificateTemplate(commonName: "platform CA", isCertificateAuthority: true, notBefore: 0,
                                                            notAfter: Int64(Date().timeIntervalSince1970) + 86400 * 3650), subjectKey: key)
    return Secret(metadata: ObjectMeta(name: "certgate-ca", namespace: "certgate"), type: "kubernetes.io/tls",
                  data: ["tls.crt": Array(try ca.pem().utf8), "tls.key": Array(try key.pkcs8PEM().utf8)])
}