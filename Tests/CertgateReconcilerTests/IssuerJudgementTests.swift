import CertgateCrypto
import CertgateKube
import CertgateKubeTesting
import CertgatePKI
@testable import CertgateReconciler
import CertgateTestSupport
import Foundation
import Logging
import Testing

/// The issuer's CA is judged before it signs: a CA that cannot sign makes its Pkis wait with
/// IssuerNotReady saying what is wrong and what to do, logs once for the operator, issues
/// nothing, and is looked at again only when its Secret changes.
@Suite struct IssuerJudgementTests {
    /// A rig whose reconciler reports to `lines`, and a CA Secret made by `makeCA`.
    private func rig(caCertificatePEM: String, keyPEM: String, lines: Shared<[String]>) throws -> (Rig, PkiReconciler) {
        let rig = try Rig(bootstrapCA: false)
        _ = try rig.client.create(.secrets, namespace: "certgate", Secret(
            metadata: ObjectMeta(name: "certgate-ca", namespace: "certgate"), type: "kubernetes.io/tls",
            data: ["tls.crt": Array(caCertificatePEM.utf8), "tls.key": Array(keyPEM.utf8)]))
        let reporter = FailureReporter(logger: Logger(label: "test") { _ in MemoryLogHandler(lines: lines) })
        let reconciler = PkiReconciler(policy: { examplePolicy }, failures: reporter, clock: { Int64(rig.clock.read()) })
        try rig.createPki()
        return (rig, reconciler)
    }

    /// A CA signed by `CertificateSigner` with validity from `notBefore` to `notAfter` (seconds from now).
    private func signedCA(isCA: Bool = true, from notBefore: Int64 = -3600, to notAfter: Int64) throws -> (String, String) {
        let key = try PrivateKey.generate(.ecdsaP256)
        let now = Int64(Date().timeIntervalSince1970)
        let certificate = try CertificateSigner.sign(CertificateTemplate(commonName: "team CA", isCertificateAuthority: isCA,
                                                                         notBefore: now + notBefore, notAfter: now + notAfter), subjectKey: key)
        return (try certificate.pem(), try key.pkcs8PEM())
    }

    /// A CA made by the openssl command line with these extra extensions.
    private func opensslCA(_ extensions: [String]) throws -> (String, String) {
        let directory = TemporaryDirectory()
        var arguments = ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "30",
                         "-keyout", directory.file("ca.key"), "-out", directory.file("ca.crt"), "-subj", "/CN=home-made CA"]
        for item in extensions { arguments += ["-addext", item] }
        let made = try runProcess("openssl", arguments)
        #expect(made.status == 0, "\(made.output)")
        return (try String(contentsOfFile: directory.file("ca.crt"), encoding: .utf8), try String(contentsOfFile: directory.file("ca.key"), encoding: .utf8))
    }

    private func expectRefused(_ rig: Rig, _ reconciler: PkiReconciler, lines: Shared<[String]>, saying expected: String,
                               requeue: Double? = nil, sourceLocation: SourceLocation = #_sourceLocation) throws {
        for _ in 0..<3 {
            let outcome = reconciler.reconcile(namespace: "app1", name: "app1-pki", in: rig.context)
            if let requeue, case .done(let after?) = outcome {
                #expect(abs(after - requeue) < 120, "looked at again when the CA becomes valid", sourceLocation: sourceLocation)
            } else {
                #expect(outcome == .done(requeueAfter: nil), "nothing to retry until the CA Secret changes", sourceLocation: sourceLocation)
            }
        }
        let ready = try rig.ready()
        #expect(ready?.reason == "IssuerNotReady", sourceLocation: sourceLocation)
        #expect(ready?.message?.contains(expected) == true, "\(String(describing: ready?.message))", sourceLocation: sourceLocation)
        #expect(rig.api.object(.secrets, namespace: "app1", name: "app1-pki") == nil, "no certificate issued from it", sourceLocation: sourceLocation)
        let warnings = lines.value.filter { $0.hasPrefix("warning") }
        #expect(warnings.count == 1, "logged once for the operator: \(lines.value)", sourceLocation: sourceLocation)
        #expect(warnings.first?.contains("issuer \"default\" cannot sign") == true, sourceLocation: sourceLocation)
    }

    @Test func anExpiredCASignsNothingAndSaysWhenItExpired() throws {
        let lines = Shared<[String]>([])
        let (certificate, key) = try signedCA(from: -90 * 86400, to: -30 * 86400)
        let (rig, reconciler) = try rig(caCertificatePEM: certificate, keyPEM: key, lines: lines)
        defer { rig.api.stop() }
        let expiry = Date(timeIntervalSince1970: Double(try Certificate(pem: Array(certificate.utf8)).notAfter))
        let day = expiry.ISO8601Format(.iso8601.year().month().day())
        try expectRefused(rig, reconciler, lines: lines,
                          saying: "the CA certificate in certgate/certgate-ca expired on \(day); put a renewed CA in that Secret")
    }

    @Test func aCANotYetValidWaitsUntilItIs() throws {
        let lines = Shared<[String]>([])
        let (certificate, key) = try signedCA(from: 3600, to: 365 * 86400)
        let (rig, reconciler) = try rig(caCertificatePEM: certificate, keyPEM: key, lines: lines)
        defer { rig.api.stop() }
        try expectRefused(rig, reconciler, lines: lines, saying: "is not valid before", requeue: 3600)
    }

    @Test func aCertificateThatIsNotACASignsNothing() throws {
        let lines = Shared<[String]>([])
        let (certificate, key) = try signedCA(isCA: false, to: 365 * 86400)
        let (rig, reconciler) = try rig(caCertificatePEM: certificate, keyPEM: key, lines: lines)
        defer { rig.api.stop() }
        try expectRefused(rig, reconciler, lines: lines,
                          saying: "the certificate in certgate/certgate-ca is not a CA (its basicConstraints do not say CA:TRUE)")
    }

    @Test func aCAWhoseKeyUsageLacksKeyCertSignSignsNothing() throws {
        let lines = Shared<[String]>([])
        let (certificate, key) = try opensslCA(["basicConstraints=critical,CA:TRUE", "keyUsage=critical,digitalSignature"])
        let (rig, reconciler) = try rig(caCertificatePEM: certificate, keyPEM: key, lines: lines)
        defer { rig.api.stop() }
        try expectRefused(rig, reconciler, lines: lines, saying: "may not sign certificates (its keyUsage lacks keyCertSign)")
    }

    /// RFC 5280 wants a subjectKeyIdentifier on a CA; many home-made ones lack it. Certgate
    /// issues from it, naming the issuer by name and serial, and openssl verifies the chain.
    @Test func aCAWithoutSubjectKeyIdentifierStillIssuesAChainThatVerifies() throws {
        let lines = Shared<[String]>([])
        let (certificate, key) = try opensslCA(["basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign",
                                                "subjectKeyIdentifier=none", "authorityKeyIdentifier=none"])
        let (rig, reconciler) = try rig(caCertificatePEM: certificate, keyPEM: key, lines: lines)
        defer { rig.api.stop() }
        guard case .done = reconciler.reconcile(namespace: "app1", name: "app1-pki", in: rig.context) else { Issue.record("not done"); return }
        let ready = try rig.ready()
        #expect(ready?.status == "True", "\(String(describing: ready?.message))")
        let directory = TemporaryDirectory()
        try certificate.write(toFile: directory.file("ca.crt"), atomically: true, encoding: .utf8)
        let chain = try Certificate.chain(pem: try rig.secret().bytes("tls.crt")!)
        try chain[0].pem().write(toFile: directory.file("leaf.crt"), atomically: true, encoding: .utf8)
        let verified = try runProcess("openssl", ["verify", "-CAfile", directory.file("ca.crt"), directory.file("leaf.crt")])
        #expect(verified.status == 0 && verified.stdout.contains(": OK"), "\(verified.output)")
        #expect(lines.value.filter { $0.hasPrefix("warning") }.isEmpty, "\(lines.value)")
    }

    /// --bootstrap-ca makes the default issuer's CA only; another issuer's CA is made only
    /// when it is named (--bootstrap-ca-issuer), so a typo in a secretName mints nothing.
    @Test func onlyTheDefaultIssuerAndIssuersNamedExplicitlyGetABootstrappedCA() throws {
        let rig = try Rig(bootstrapCA: false)
        defer { rig.api.stop() }
        let policy = Policy(namespaces: ["app1": ["app1"]],
                            issuers: ["default": SecretReference(namespace: "certgate", name: "certgate-ca"),
                                      "team": SecretReference(namespace: "certgate", name: "team-ca"),
                                      "typo": SecretReference(namespace: "certgate", name: "tem-ca")])
        let lines = Shared<[String]>([])
        let reporter = FailureReporter(logger: Logger(label: "test") { _ in MemoryLogHandler(lines: lines) })
        func secretNames() throws -> [String] {
            try rig.client.list(.secrets, namespace: "certgate", of: Secret.self).items.compactMap(\.metadata.name).sorted()
        }
        try PkiReconciler(policy: { policy }, bootstrapCA: true).bootstrapAuthorities(in: rig.context)
        #expect(try secretNames() == ["certgate-ca"])
        try PkiReconciler(policy: { policy }, bootstrapCA: true, bootstrapIssuers: ["team", "nonexistent"], failures: reporter)
            .bootstrapAuthorities(in: rig.context)
        #expect(try secretNames() == ["certgate-ca", "team-ca"])
        #expect(lines.value.contains { $0.hasPrefix("warning: --bootstrap-ca-issuer names an issuer the policy does not have") }, "\(lines.value)")
    }
}
