import CertgateCrypto
import CertgateTestSupport
import Foundation
import Testing

/// Keystores as `openssl pkcs12 -info` reads them: the encryption each profile promises,
/// the entries inside, and a password that must open them.
@Suite struct KeystoreTests {
    private let now = Int64(Date().timeIntervalSince1970)

    private func chain() throws -> (key: PrivateKey, chain: [Certificate], root: Certificate) {
        let root = try CertificateSigner.makeAuthority(commonName: "Test Root", notBefore: now - 60, notAfter: now + 7200)
        let leaf = try CertificateSigner.makeServingCertificate(hosts: ["app1.app1.svc"], notBefore: now - 60, notAfter: now + 3600,
                                                                issuer: root)
        return (leaf.key, [leaf.certificate, root.certificate], root.certificate)
    }

    private func info(_ bytes: [UInt8], password: String, legacy: Bool, in directory: TemporaryDirectory) throws -> ProcessResult {
        let file = directory.file("store.p12")
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        return try runProcess("openssl", ["pkcs12", "-info", "-in", file, "-passin", "pass:\(password)", "-nodes"] + (legacy ? ["-legacy"] : []))
    }

    @Test func aModernKeystoreIsAESWithPBKDF2AndASHA256MAC() throws {
        let directory = TemporaryDirectory()
        let (key, chain, _) = try chain()
        let store = try Keystore.pkcs12(key: key, chain: chain, password: "s3cret", profile: .modern)
        let info = try info(store, password: "s3cret", legacy: false, in: directory)
        #expect(info.status == 0, "\(info.output)")
        #expect(info.stderr.contains("MAC: sha256"), "\(info.stderr)")
        #expect(info.stderr.contains("PBES2, PBKDF2, AES-256-CBC"))
        #expect(!info.stderr.contains("RC2") && !info.stderr.contains("3DES"))
        #expect(info.stdout.components(separatedBy: "BEGIN CERTIFICATE").count - 1 == 2, "leaf and CA")
        #expect(info.stdout.contains("BEGIN PRIVATE KEY"))
        #expect(info.stdout.contains("subject=CN = app1.app1.svc"))

        let wrong = try self.info(store, password: "guess", legacy: false, in: directory)
        #expect(wrong.status != 0)
        let opened = Keystore.open(pkcs12: store, password: "s3cret")
        #expect(opened?.leaf?.serialNumberHex == chain[0].serialNumberHex)
        #expect(opened?.profile == .modern)
        #expect(Keystore.open(pkcs12: store, password: "guess") == nil)
    }

    @Test func aLegacyKeystoreIsRC2And3DESWithASHA1MAC() throws {
        let directory = TemporaryDirectory()
        let (key, chain, _) = try chain()
        let store = try Keystore.pkcs12(key: key, chain: chain, password: "changeit", profile: .legacyRC2)
        let info = try info(store, password: "changeit", legacy: true, in: directory)
        #expect(info.status == 0, "\(info.output)")
        #expect(info.stderr.contains("MAC: sha1"), "\(info.stderr)")
        #expect(info.stderr.contains("pbeWithSHA1And40BitRC2-CBC"))
        #expect(info.stderr.contains("pbeWithSHA1And3-KeyTripleDES-CBC"))
        let opened = Keystore.open(pkcs12: store, password: "changeit")
        #expect(opened?.leaf?.serialNumberHex == chain[0].serialNumberHex)
        #expect(opened?.profile == .legacyRC2)
    }

    @Test func aTrustStoreHoldsTheCAMarkedTrustedForJava() throws {
        let directory = TemporaryDirectory()
        let (_, _, root) = try chain()
        let store = try Keystore.pkcs12TrustStore([root], password: "s3cret", profile: .modern)
        let info = try info(store, password: "s3cret", legacy: false, in: directory)
        #expect(info.status == 0, "\(info.output)")
        #expect(info.stdout.contains("subject=CN = Test Root"))
        #expect(!info.stdout.contains("PRIVATE KEY"))
        #expect(info.stdout.contains("2.16.840.1.113894.746875.1.1") || info.stdout.contains("Trusted key usage"), "\(info.stdout)")
        #expect(info.stdout.contains("friendlyName: ca-0"))
        #expect(Keystore.open(pkcs12: store, password: "s3cret")?.leaf == nil, "opens, and holds no key entry")
    }

    @Test func theDERKeyIsThePEMKey() throws {
        let directory = TemporaryDirectory()
        let (key, _, _) = try chain()
        try Data(try Keystore.der(key)).write(to: URL(fileURLWithPath: directory.file("key.der")))
        let converted = try runProcess("openssl", ["pkey", "-inform", "DER", "-in", directory.file("key.der")])
        #expect(converted.status == 0, "\(converted.output)")
        #expect(converted.stdout == (try key.pkcs8PEM()))
    }
}

@Suite struct IdentityNamesTests {
    /// URI SANs (with the ',' and ':' OpenSSL's configuration syntax would split on), email
    /// SANs and subject attributes, as openssl x509 prints them and as certgate reads them back.
    @Test func urisEmailsAndSubjectAttributesReachTheCertificate() throws {
        let directory = TemporaryDirectory()
        let now = Int64(Date().timeIntervalSince1970)
        let root = try CertificateSigner.makeAuthority(commonName: "Test Root", notBefore: now - 60, notAfter: now + 7200)
        var template = CertificateTemplate(commonName: "app1", dnsNames: ["app1.app1.svc"], ipAddresses: ["10.0.0.1"],
                                           notBefore: now - 60, notAfter: now + 3600)
        template.uris = ["spiffe://cluster.local/ns/app1/sa/app1", "https://example.com/a,b:c?d=e"]
        template.emailAddresses = ["ops@example.com"]
        template.subject = SubjectAttributes(countries: ["DE"], provinces: ["Berlin"], localities: ["Berlin"],
                                             organizations: ["Example GmbH", "Zweite"], organizationalUnits: ["Platform"])
        let leaf = try CertificateSigner.sign(template, subjectKey: try PrivateKey.generate(.ecdsaP256), issuer: root)
        try leaf.pem().write(toFile: directory.file("leaf.crt"), atomically: true, encoding: .utf8)
        let text = try runProcess("openssl", ["x509", "-in", directory.file("leaf.crt"), "-noout", "-text"]).stdout
        #expect(text.contains("DNS:app1.app1.svc, IP Address:10.0.0.1, URI:spiffe://cluster.local/ns/app1/sa/app1, "
            + "URI:https://example.com/a,b:c?d=e, email:ops@example.com"), "\(text)")
        #expect(text.contains("Subject: C = DE, ST = Berlin, L = Berlin, O = Example GmbH, O = Zweite, OU = Platform, CN = app1"), "\(text)")

        let names = leaf.subjectAlternativeNames
        #expect(names.uris == template.uris)
        #expect(names.emailAddresses == ["ops@example.com"])
        #expect(names.dnsNames == ["app1.app1.svc"] && names.ipAddresses == ["10.0.0.1"])
        #expect(leaf.subjectAttributes == template.subject)
        #expect(leaf.commonName == "app1")
    }
}

/// What Java sees, with the JDK's keytool (scripts/setup installs a JRE from Debian).
@Suite struct KeytoolTests {
    @Test(arguments: [Keystore.Profile.modern, .legacyRC2])
    func javaReadsTheKeystoreAsAKeyEntryAndTheTruststoreAsTrusted(_ profile: Keystore.Profile) throws {
        let directory = TemporaryDirectory()
        let now = Int64(Date().timeIntervalSince1970)
        let root = try CertificateSigner.makeAuthority(commonName: "Test Root", notBefore: now - 60, notAfter: now + 7200)
        let leaf = try CertificateSigner.makeServingCertificate(hosts: ["app1.app1.svc"], notBefore: now - 60, notAfter: now + 3600, issuer: root)
        try Data(try Keystore.pkcs12(key: leaf.key, chain: [leaf.certificate, root.certificate], password: "s3cret", profile: profile))
            .write(to: URL(fileURLWithPath: directory.file("keystore.p12")))
        try Data(try Keystore.pkcs12TrustStore([root.certificate], password: "s3cret", profile: profile))
            .write(to: URL(fileURLWithPath: directory.file("truststore.p12")))
        let keytool = try which("keytool")
        let keys = try runProcess(keytool, ["-list", "-v", "-storetype", "PKCS12", "-keystore", directory.file("keystore.p12"), "-storepass", "s3cret"])
        #expect(keys.status == 0, "\(keys.output)")
        #expect(keys.stdout.contains("Entry type: PrivateKeyEntry"), "\(keys.stdout)")
        #expect(keys.stdout.contains("Certificate chain length: 2"))
        let trust = try runProcess(keytool, ["-list", "-v", "-storetype", "PKCS12", "-keystore", directory.file("truststore.p12"), "-storepass", "s3cret"])
        #expect(trust.status == 0, "\(trust.output)")
        #expect(trust.stdout.contains("Entry type: trustedCertEntry"), "\(trust.stdout)")
        #expect(trust.stdout.contains("Owner: CN=Test Root"))
    }
}
