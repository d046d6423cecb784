import CertgateCrypto
import CertgatePKI
import CertgateTestSupport
import Foundation
import Testing

func authority(_ algorithm: PrivateKey.Algorithm) throws -> CertificateAuthority {
    let key = try PrivateKey.generate(algorithm)
    let now = Int64(Date().timeIntervalSince1970)
    let certificate = try CertificateSigner.sign(
        CertificateTemplate(commonName: "certgate CA", isCertificateAuthority: true, notBefore: now - 60, notAfter: now + 10 * 365 * 86400),
        subjectKey: key)
    return CertificateAuthority(certificate: certificate, key: key)
}

@Suite struct IssuanceTests {
    @Test(arguments: [
        (PrivateKeySpec(algorithm: "ECDSA", size: 256), "NIST CURVE: P-256"),
        (PrivateKeySpec(algorithm: "ECDSA", size: 384), "NIST CURVE: P-384"),
        (PrivateKeySpec(algorithm: "RSA", size: 2048), "Public-Key: (2048 bit)"),
        (PrivateKeySpec(algorithm: "Ed25519"), "ED25519"),
    ])
    func issuesWhatTheSpecAsksAndOpenSSLVerifiesIt(_ key: PrivateKeySpec, _ expectedKeyText: String) throws {
        let ca = try authority(.ecdsaP256)
        let spec = PkiSpec(serviceName: "app1", commonName: "app1.app1.svc", dnsNames: ["app1.app1.svc", "app1.app1.svc.cluster.local"],
                           ipAddresses: ["10.0.0.7"], duration: "2160h", renewBefore: "720h", privateKey: key,
                           usages: ["server auth", "client auth", "key encipherment"])
        let now = Int64(Date().timeIntervalSince1970)
        let issued = try Issuance.issue(spec, policy: Policy(), by: ca, now: now)
        #expect(issued.notBefore == now - 300)
        #expect(issued.notAfter == now + 2160 * 3600)
        #expect(issued.renewalTime == issued.notAfter - 720 * 3600)
        #expect(issued.privateKeyPEM.hasPrefix("-----BEGIN PRIVATE KEY-----"))

        let directory = TemporaryDirectory()
        try issued.certificateChainPEM.write(toFile: directory.file("tls.crt"), atomically: true, encoding: .utf8)
        try issued.caPEM.write(toFile: directory.file("ca.crt"), atomically: true, encoding: .utf8)
        let verify = try runProcess("openssl", ["verify", "-CAfile", directory.file("ca.crt"), directory.file("tls.crt")])
        #expect(verify.stdout.contains("tls.crt: OK"), "\(verify.output)")
        let text = try runProcess("openssl", ["x509", "-in", directory.file("tls.crt"), "-noout", "-text", "-serial"]).stdout
        #expect(text.contains(expectedKeyText), "\(text)")
        #expect(text.contains("DNS:app1.app1.svc, DNS:app1.app1.svc.cluster.local, IP Address:10.0.0.7"))
        #expect(text.contains("TLS Web Server Authentication, TLS Web Client Authentication"))
        #expect(text.contains("CA:FALSE"))
        #expect(text.contains("Subject: CN = app1.app1.svc"))
        #expect(text.contains("serial=\(issued.serialNumber)"))
        #expect(text.contains(key.algorithm == "RSA" ? "Digital Signature, Key Encipherment" : "Digital Signature\n"))
        let chain = try Certificate.chain(pem: Array(issued.certificateChainPEM.utf8))
        #expect(chain.map(\.commonName) == ["app1.app1.svc", "certgate CA"], "tls.crt holds the leaf, then the CA")
    }

    @Test func anRSACASignsToo() throws {
        let ca = try authority(.rsa(bits: 2048))
        let issued = try Issuance.issue(PkiSpec(serviceName: "app1", dnsNames: ["app1.app1.svc"]), policy: Policy(), by: ca,
                                        now: Int64(Date().timeIntervalSince1970))
        let directory = TemporaryDirectory()
        try issued.certificateChainPEM.write(toFile: directory.file("tls.crt"), atomically: true, encoding: .utf8)
        try issued.caPEM.write(toFile: directory.file("ca.crt"), atomically: true, encoding: .utf8)
        #expect(try runProcess("openssl", ["verify", "-CAfile", directory.file("ca.crt"), directory.file("tls.crt")]).stdout.contains("OK"))
        #expect(issued.notAfter - issued.notBefore == Int64(Policy().defaultDuration) + 300, "the policy's default duration")
        #expect(issued.renewalTime == issued.notAfter - Int64(Policy().defaultDuration) / 3, "renewBefore defaults to a third")
    }

    @Test func aKeptKeyIsReusedOnlyWhenItIsOfTheKindAskedFor() throws {
        let ca = try authority(.ecdsaP256)
        let kept = try PrivateKey.generate(.ecdsaP256)
        let spec = PkiSpec(serviceName: "app1", dnsNames: ["a.svc"], privateKey: PrivateKeySpec(algorithm: "ECDSA", size: 256))
        let renewed = try Issuance.issue(spec, policy: Policy(), by: ca, now: 0, reusing: kept)
        #expect(renewed.privateKeyPEM == (try kept.pkcs8PEM()))
        var rsa = spec
        rsa.privateKey = PrivateKeySpec(algorithm: "RSA", size: 2048)
        #expect(try Issuance.issue(rsa, policy: Policy(), by: ca, now: 0, reusing: kept).privateKeyPEM != (try kept.pkcs8PEM()))
    }
}
