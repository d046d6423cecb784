import CertgateCrypto
import CertgateTestSupport
import Foundation
import Testing

@Suite struct PrivateKeyTests {
    @Test(arguments: [PrivateKey.Algorithm.ecdsaP256, .ecdsaP384, .rsa(bits: 2048), .ed25519])
    func generatesKeysThatRoundTripAsPKCS8(_ algorithm: PrivateKey.Algorithm) throws {
        let key = try PrivateKey.generate(algorithm)
        let pem = try key.pkcs8PEM()
        #expect(pem.hasPrefix("-----BEGIN PRIVATE KEY-----\n"))
        let parsed = try PrivateKey(pem: Array(pem.utf8))
        #expect(parsed.algorithm == algorithm)

        // openssl reads it back as the same kind of key.
        let directory = TemporaryDirectory()
        try pem.write(toFile: directory.file("key.pem"), atomically: true, encoding: .utf8)
        let text = try runProcess("openssl", ["pkey", "-in", directory.file("key.pem"), "-noout", "-text"])
        #expect(text.status == 0)
        switch algorithm {
        case .ecdsaP256: #expect(text.stdout.contains("NIST CURVE: P-256"))
        case .ecdsaP384: #expect(text.stdout.contains("NIST CURVE: P-384"))
        case .rsa: #expect(text.stdout.contains("Private-Key: (2048 bit"))
        case .ed25519: #expect(text.stdout.contains("ED25519 Private-Key"))
        }
    }

    @Test func garbageIsRefusedWithOpenSSLsReason() {
        #expect {
            try PrivateKey(pem: Array("not a key".utf8))
        } throws: { error in
            let text = "\(error)"
            return text.hasPrefix("reading a PEM private key failed: ") && text.contains("error:")
        }
    }
}

@Suite struct CertificateSignerTests {
    @Test func signsACAAndALeafThatOpenSSLVerifies() throws {
        let directory = TemporaryDirectory()
        let now = Int64(Date().timeIntervalSince1970)
        let caKey = try PrivateKey.generate(.ecdsaP256)
        let ca = try CertificateSigner.sign(
            CertificateTemplate(commonName: "Test CA", isCertificateAuthority: true, notBefore: now - 60, notAfter: now + 3600),
            subjectKey: caKey)
        let leafKey = try PrivateKey.generate(.rsa(bits: 2048))
        let leaf = try CertificateSigner.sign(
            CertificateTemplate(commonName: "app1.app1.svc", dnsNames: ["app1.app1.svc", "*.app1.svc"], ipAddresses: ["10.0.0.1", "fd00::1"],
                                extendedKeyUsages: [.serverAuth, .clientAuth], notBefore: now - 60, notAfter: now + 1800),
            subjectKey: leafKey, issuer: (ca, caKey))
        try ca.pem().write(toFile: directory.file("ca.crt"), atomically: true, encoding: .utf8)
        try leaf.pem().write(toFile: directory.file("leaf.crt"), atomically: true, encoding: .utf8)

        let verify = try runProcess("openssl", ["verify", "-CAfile", directory.file("ca.crt"), directory.file("leaf.crt")])
        #expect(verify.stdout.contains("leaf.crt: OK"), "\(verify.output)")

        let text = try runProcess("openssl", ["x509", "-in", directory.file("leaf.crt"), "-noout", "-text", "-serial"]).stdout
        #expect(text.contains("DNS:app1.app1.svc, DNS:*.app1.svc, IP Address:10.0.0.1, IP Address:FD00:0:0:0:0:0:0:1"))
        #expect(text.contains("CA:FALSE"))
        #expect(text.contains("TLS Web Server Authentication, TLS Web Client Authentication"))
        #expect(text.contains("Digital Signature, Key Encipherment"))
        #expect(text.contains("X509v3 Authority Key Identifier"))
        #expect(text.contains("Subject: CN = app1.app1.svc"))
        #expect(text.contains("serial=\(leaf.serialNumberHex)"))
        #expect(leaf.notAfter - leaf.notBefore == 1860)
        #expect(leaf.commonName == "app1.app1.svc")
        #expect(leaf.matches(leafKey))
        #expect(!leaf.matches(caKey))
    }

    @Test func serialsAreRandomAndPositive() throws {
        let key = try PrivateKey.generate(.ed25519)
        let template = CertificateTemplate(commonName: "x", notBefore: 0, notAfter: 1_000_000_000_000 / 1000)
        let serials = try (0..<8).map { _ in try CertificateSigner.sign(template, subjectKey: key).serialNumberHex }
        #expect(Set(serials).count == 8)
        #expect(serials.allSatisfy { !$0.hasPrefix("-") && $0.count >= 24 })
    }

    @Test func namesThatWouldBreakTheExtensionSyntaxAreRefused() throws {
        let key = try PrivateKey.generate(.ecdsaP256)
        #expect(throws: OpenSSLError.self) {
            try CertificateSigner.sign(CertificateTemplate(commonName: nil, dnsNames: ["a,DNS:evil.com"], notBefore: 0, notAfter: 10), subjectKey: key)
        }
        #expect(throws: OpenSSLError.self) {
            try CertificateSigner.sign(CertificateTemplate(commonName: nil, ipAddresses: ["300.1.1.1"], notBefore: 0, notAfter: 10), subjectKey: key)
        }
    }

    @Test func aBundleParsesInOrderAndGarbageDoesNot() throws {
        let key = try PrivateKey.generate(.ecdsaP256)
        let a = try CertificateSigner.sign(CertificateTemplate(commonName: "a", notBefore: 0, notAfter: 10), subjectKey: key)
        let b = try CertificateSigner.sign(CertificateTemplate(commonName: "b", notBefore: 0, notAfter: 10), subjectKey: key)
        let chain = try Certificate.chain(pem: Array((try a.pem() + b.pem()).utf8))
        #expect(chain.map(\.commonName) == ["a", "b"])
        #expect(throws: OpenSSLError.self) { try Certificate.chain(pem: Array("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".utf8)) }
        #expect(throws: OpenSSLError.self) { try Certificate.chain(pem: []) }
    }
}
