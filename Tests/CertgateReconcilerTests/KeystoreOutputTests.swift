import CertgateCrypto
import CertgateKube
import CertgateKubeTesting
import CertgatePKI
@testable import CertgateReconciler
import CertgateTestSupport
import Foundation
import Testing

/// spec.keystores: more keys of the same Secret, checked with openssl as an application
/// would read them, kept in step with tls.crt and the password, and never rewritten for nothing.
@Suite struct KeystoreOutputTests {
    private func askForKeystores(_ rig: Rig, profile: String = "Modern2023") throws {
        let patch = #"{"spec":{"keystores":{"pkcs12":{"passwordSecretRef":{"name":"app1-keystore","key":"password"},"profile":"\#(profile)"},"#
            + #""combinedPEM":{},"der":{}}}}"#
        let _: Pki = try rig.client.mergePatch(.pkis, namespace: "app1", name: "app1-pki", patch: Array(patch.utf8))
    }

    private func setPassword(_ rig: Rig, _ password: String) throws {
        let secret = Secret(metadata: ObjectMeta(name: "app1-keystore", namespace: "app1"), data: ["password": Array(password.utf8)])
        if (try? rig.client.get(.secrets, namespace: "app1", name: "app1-keystore", as: Secret.self)) == nil {
            _ = try rig.client.create(.secrets, namespace: "app1", secret)
        } else {
            let _: Secret = try rig.client.mergePatch(.secrets, namespace: "app1", name: "app1-keystore",
                                                      patch: Array(try JSONEncoder().encode(secret)))
        }
    }

    @Test func everyFormIsWrittenAndReadsBackAsTheCertificate() throws {
        let rig = try Rig()
        defer { rig.api.stop() }
        let directory = TemporaryDirectory()
        try rig.createPki()
        try askForKeystores(rig)
        _ = rig.reconcile()
        #expect(try rig.ready()?.reason == "KeystorePasswordNotFound")
        #expect(try rig.events(about: "Pki", "app1-pki").last?.contains("Secret app1-keystore does not exist in namespace app1") == true)

        try setPassword(rig, "s3cret")
        _ = rig.reconcile()
        #expect(try rig.ready()?.status == "True")
        var secret = try rig.secret()
        let chain = try #require(secret.bytes("tls.crt"))
        let key = try #require(secret.bytes("tls.key"))
        for name in ["keystore.p12", "truststore.p12", "tls-combined.pem", "key.der"] {
            try Data(try #require(secret.bytes(name), "\(name) written")).write(to: URL(fileURLWithPath: directory.file(name)))
        }
        let keystore = try runProcess("openssl", ["pkcs12", "-in", directory.file("keystore.p12"), "-passin", "pass:s3cret", "-nokeys", "-clcerts"])
        #expect(keystore.status == 0, "\(keystore.output)")
        #expect(try Certificate(pem: Array(keystore.stdout.utf8)).serialNumberHex == (try Certificate(pem: chain)).serialNumberHex)
        let trust = try runProcess("openssl", ["pkcs12", "-in", directory.file("truststore.p12"), "-passin", "pass:s3cret", "-nokeys"])
        #expect(trust.status == 0, "\(trust.output)")
        #expect(try String(contentsOfFile: directory.file("tls-combined.pem"), encoding: .utf8) == String(decoding: key + chain, as: UTF8.self))
        let der = try runProcess("openssl", ["pkey", "-inform", "DER", "-in", directory.file("key.der")])
        #expect(der.stdout == String(decoding: key, as: UTF8.self))

        // Nothing changed: nothing is written (a PKCS#12 file is random each time it is made).
        let version = secret.metadata.resourceVersion
        _ = rig.reconcile()
        #expect(try rig.secret().metadata.resourceVersion == version)

        // A new password: new keystores, the same certificate.
        let serial = try rig.pki().status?.serialNumber
        try setPassword(rig, "n3w")
        _ = rig.reconcile()
        secret = try rig.secret()
        #expect(Keystore.open(pkcs12: try #require(secret.bytes("keystore.p12")), password: "n3w")?.leaf?.serialNumberHex == serial)
        #expect(Keystore.open(pkcs12: try #require(secret.bytes("truststore.p12")), password: "n3w") != nil)
        #expect(try rig.pki().status?.serialNumber == serial, "no certificate issued for a password")

        // Another profile: written again with it.
        try askForKeystores(rig, profile: "LegacyRC2")
        _ = rig.reconcile()
        #expect(Keystore.open(pkcs12: try #require(try rig.secret().bytes("keystore.p12")), password: "n3w")?.profile == .legacyRC2)
    }

    @Test func theWebhookSaysWhatAKeystoreLacks() {
        let pki = Pki(metadata: ObjectMeta(name: "web", namespace: "app1"), spec: PkiSpec(
            serviceName: "app1", dnsNames: ["app1.app1.svc"],
            keystores: KeystoresSpec(pkcs12: PKCS12Spec(passwordSecretRef: SecretKeySelector(name: "Bad_Name"), profile: "LegacyRC"))))
        #expect(judge(pki, namespace: "app1", policy: Policy(namespaces: ["app1": ["app1"]])).violations.map(\.description) == [
            #"spec.keystores.pkcs12.profile: "LegacyRC" is not a profile; use Modern2023 (AES-256-CBC, the default) or LegacyRC2 (RC2 and 3DES, only for Java before 8u301) (did you mean "LegacyRC2"?)"#,
            #"spec.keystores.pkcs12.passwordSecretRef.name: "Bad_Name" is not a valid Secret name"#,
            "spec.keystores.pkcs12.passwordSecretRef.key: required: the key of the Secret that holds the password, such as password",
        ])
    }
}
