import CertgateCrypto
import CertgateKube
import CertgatePKI
import CertgateStatus
import Foundation
import Testing

/// A certificate signed by a fresh CA, and that CA.
private func issued(by caName: String) throws -> (leaf: String, key: String, ca: String) {
    let now = Int64(Date().timeIntervalSince1970)
    let caKey = try PrivateKey.generate(.ecdsaP256)
    let ca = try CertificateSigner.sign(CertificateTemplate(commonName: caName, isCertificateAuthority: true, notBefore: now - 60,
                                                            notAfter: now + 86400), subjectKey: caKey)
    let key = try PrivateKey.generate(.ecdsaP256)
    let authority = CertificateAuthority(certificate: ca, key: caKey)
    let spec = PkiSpec(serviceName: "app1", dnsNames: ["app1.app1.svc"], duration: "1h")
    let certificate = try Issuance.issue(spec, policy: Policy(namespaces: ["app1": ["app1"]]), by: authority, now: now, reusing: key)
    return (certificate.certificateChainPEM, certificate.privateKeyPEM, try ca.pem())
}

@Suite struct SecretReportTests {
    @Test func aChainThatLeadsToItsCaCrtVerifies() throws {
        let (leaf, key, ca) = try issued(by: "team CA")
        let secret = Secret(metadata: ObjectMeta(name: "web"), data: ["tls.crt": Array(leaf.utf8), "tls.key": Array(key.utf8), "ca.crt": Array(ca.utf8)])
        let report = SecretReport.read(secret, namespace: "app1", name: "web", now: Int64(Date().timeIntervalSince1970))
        #expect(report.problem == nil)
        #expect(report.certificate?.chainVerifies == true)
        #expect(report.certificate?.issuer == "team CA")
        #expect(report.certificate?.dnsNames == ["app1.app1.svc"])
        #expect(report.text().contains("  Chain:        verifies against ca.crt\n"))
    }

    /// ca.crt of another CA, and a tls.key of another certificate: both said, in OpenSSL's
    /// words for the chain.
    @Test func aForeignCaCrtOrKeyIsSaid() throws {
        let (leaf, _, _) = try issued(by: "team CA")
        let (_, otherKey, otherCA) = try issued(by: "other CA")
        let secret = Secret(metadata: ObjectMeta(name: "web"),
                            data: ["tls.crt": Array(leaf.utf8), "tls.key": Array(otherKey.utf8), "ca.crt": Array(otherCA.utf8)])
        let report = SecretReport.read(secret, namespace: "app1", name: "web", now: Int64(Date().timeIntervalSince1970))
        #expect(report.problem == "tls.key is not the key of tls.crt")
        #expect(report.certificate?.chainVerifies == false)
        #expect(report.text().contains("  Chain:        does NOT verify: self-signed certificate in certificate chain"), "\(report.text())")
    }
}
