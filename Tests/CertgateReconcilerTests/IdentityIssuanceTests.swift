import CertgateCrypto
import CertgateKube
import CertgateKubeTesting
import CertgatePKI
@testable import CertgateReconciler
import Foundation
import Testing

/// spec.uris, spec.emailAddresses and spec.subject reach the certificate, and a change to
/// any of them issues again, saying why.
@Suite struct IdentityIssuanceTests {
    @Test func urisEmailsAndSubjectAreIssuedAndAChangeReissues() throws {
        let rig = try Rig()
        defer { rig.api.stop() }
        _ = try rig.client.create(.pkis, namespace: "app1", Pki(
            metadata: ObjectMeta(name: "app1-pki", namespace: "app1"),
            spec: PkiSpec(serviceName: "app1", dnsNames: ["app1.app1.svc"], uris: ["spiffe://cluster.local/ns/app1/sa/app1"],
                          emailAddresses: ["ops@example.com"], subject: SubjectSpec(organizationalUnits: ["Platform"], countries: ["DE"]))))
        _ = rig.reconcile()
        var leaf = try Certificate(pem: try #require(try rig.secret().bytes("tls.crt")))
        #expect(leaf.subjectAlternativeNames.uris == ["spiffe://cluster.local/ns/app1/sa/app1"])
        #expect(leaf.subjectAlternativeNames.emailAddresses == ["ops@example.com"])
        #expect(leaf.subjectAttributes == SubjectAttributes(countries: ["DE"], organizationalUnits: ["Platform"]))
        let serial = leaf.serialNumberHex
        _ = rig.reconcile()
        #expect(try rig.pki().status?.serialNumber == serial, "the same spec issues nothing")

        let patch = #"{"spec":{"uris":["spiffe://cluster.local/ns/app1/sa/app1/v2"]}}"#
        let _: Pki = try rig.client.mergePatch(.pkis, namespace: "app1", name: "app1-pki", patch: Array(patch.utf8))
        _ = rig.reconcile()
        leaf = try Certificate(pem: try #require(try rig.secret().bytes("tls.crt")))
        #expect(leaf.serialNumberHex != serial)
        #expect(leaf.subjectAlternativeNames.uris == ["spiffe://cluster.local/ns/app1/sa/app1/v2"])
        #expect(try rig.events(about: "Pki", "app1-pki").last?
            .contains("its URIs [\"spiffe://cluster.local/ns/app1/sa/app1\"] are not spec.uris [\"spiffe://cluster.local/ns/app1/sa/app1/v2\"]") == true)
    }
}
