import CertgateCrypto
import CertgateKube
import CertgateKubeTesting
import CertgatePKI
@testable import CertgateReconciler
import CertgateTestSupport
import Foundation
import Testing

/// --trust-bundle-configmap: a ConfigMap with the issuers' CA in every namespace that has a
/// Pki, like kube-root-ca.crt, gone where the last Pki went, and never someone else's.
@Suite struct TrustBundleTests {
    private func waitFor(_ seconds: Double = 20, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return true }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return try condition()
    }

    private func bundle(_ rig: Rig, _ namespace: String) -> String? {
        (rig.api.object(.configMaps, namespace: namespace, name: "certgate-ca") as? [String: Any]).flatMap {
            ($0["data"] as? [String: String])?["ca.crt"]
        }
    }

    @Test func aBundleFollowsThePkisAndVerifiesTheirCertificates() throws {
        let rig = try Rig()
        defer { rig.api.stop() }
        let directory = TemporaryDirectory()
        try rig.createPki()
        _ = try rig.client.create(.pkis, namespace: "app2", Pki(metadata: ObjectMeta(name: "web", namespace: "app2"),
                                                                        spec: PkiSpec(serviceName: "app1", dnsNames: ["app1.app2.svc"])))
        // Someone else's ConfigMap of that name in app3 stays as it is.
        _ = try rig.client.create(.pkis, namespace: "app3", Pki(metadata: ObjectMeta(name: "x", namespace: "app3"),
                                                                        spec: PkiSpec(serviceName: "app1", dnsNames: ["app1.app3.svc"])))
        _ = try rig.client.create(.configMaps, namespace: "app3", ConfigMap(metadata: ObjectMeta(name: "certgate-ca", namespace: "app3"),
                                                                            data: ["ca.crt": "mine"]))
        let controller = LeadershipTerm(client: rig.client, reconciler: rig.reconciler, configuration: TermConfiguration(workers: 2, rateLimiter: RetryRateLimiter(baseDelay: 0.01, maxDelay: 1), trustBundle: "certgate-ca", asynchronousEvents: false))
        try controller.start()
        defer { controller.stop() }

        #expect(waitFor { bundle(rig, "app1") != nil && bundle(rig, "app2") != nil })
        #expect(waitFor { (try? rig.ready())??.status == "True" })
        try #require(bundle(rig, "app1")).write(toFile: directory.file("bundle.crt"), atomically: true, encoding: .utf8)
        try Data(try #require(try rig.secret().bytes("tls.crt"))).write(to: URL(fileURLWithPath: directory.file("tls.crt")))
        let verify = try runProcess("openssl", ["verify", "-CAfile", directory.file("bundle.crt"), directory.file("tls.crt")])
        #expect(verify.stdout.contains("tls.crt: OK"), "\(verify.output)")
        let labels = (rig.api.object(.configMaps, namespace: "app1", name: "certgate-ca")?["metadata"] as? [String: Any])?["labels"] as? [String: String]
        #expect(labels?[PkiReconciler.trustBundleLabel] == "true")
        #expect(bundle(rig, "app3") == "mine", "a ConfigMap certgate did not make is left alone")
        #expect(rig.api.object(.configMaps, namespace: "default", name: "certgate-ca") == nil, "no Pki, no bundle")

        try rig.client.delete(.pkis, namespace: "app2", name: "web")
        #expect(waitFor { rig.api.object(.configMaps, namespace: "app2", name: "certgate-ca") == nil }, "the last Pki went, and the bundle with it")
        #expect(bundle(rig, "app1") != nil)
    }

    /// During a CA rotation the bundle holds the new root and the old one, as long as a
    /// Secret in the namespace still carries the old root; once renewed, only the new.
    @Test func aCARotationKeepsTheOldRootInTheBundleUntilRenewal() throws {
        let rig = try Rig(bootstrapCA: false)
        defer { rig.api.stop() }
        let oldCA = try platformCA()
        _ = try rig.client.create(.secrets, namespace: "certgate", oldCA)
        try rig.createPki()
        let controller = LeadershipTerm(client: rig.client, reconciler: rig.reconciler, configuration: TermConfiguration(workers: 1, rateLimiter: RetryRateLimiter(baseDelay: 0.01, maxDelay: 1), trustBundle: "certgate-ca", asynchronousEvents: false))
        try controller.start()
        defer { controller.stop() }
        let oldRoot = try Certificate(pem: oldCA.bytes("tls.crt")!).pem()
        func roots() -> [String] { (try? Certificate.chain(pem: Array((bundle(rig, "app1") ?? "").utf8)).map { try $0.pem() }) ?? [] }
        #expect(waitFor { roots() == [oldRoot] })

        let newCA = try platformCA()
        var current = try rig.client.get(.secrets, namespace: "certgate", name: "certgate-ca", as: Secret.self)
        current.data = newCA.data
        _ = try rig.client.update(.secrets, namespace: "certgate", name: "certgate-ca", current)
        let newRoot = try Certificate(pem: newCA.bytes("tls.crt")!).pem()
        #expect(waitFor { Set(roots()) == [newRoot, oldRoot] }, "old and new during the rotation: \(roots().count)")
        #expect(roots().first == newRoot, "the issuer's current root first")
    }

    /// A bundle left in a namespace whose last Pki went while no term ran is removed by the
    /// next term.
    @Test func theNextTermRemovesABundleLeftBehind() throws {
        let rig = try Rig()
        defer { rig.api.stop() }
        _ = try rig.client.create(.configMaps, namespace: "gone", ConfigMap(
            metadata: ObjectMeta(name: "certgate-ca", namespace: "gone", labels: [PkiReconciler.trustBundleLabel: "true"]), data: ["ca.crt": "old"]))
        let controller = LeadershipTerm(client: rig.client, reconciler: rig.reconciler, configuration: TermConfiguration(workers: 1, trustBundle: "certgate-ca", asynchronousEvents: false))
        try controller.start()
        defer { controller.stop() }
        #expect(waitFor { rig.api.object(.configMaps, namespace: "gone", name: "certgate-ca") == nil })
    }
}
