import CertgatePKI
import CertgateCrypto
import CertgateKube
import CertgateKubeTesting
@testable import CertgateReconciler
import Foundation
import Testing

/// The certgate.dev/renew annotation set to a new value re-issues once; the value is kept in
/// status.lastRenewRequest so the same value never re-issues again.
@Suite struct RenewOnDemandTests {
    private func annotate(_ rig: Rig, _ value: String, manager: String = "kubectl-annotate") throws {
        let patch = #"{"metadata":{"annotations":{"certgate.dev/renew":"\#(value)"}}}"#
        let _: Pki = try rig.client.mergePatch(.pkis, namespace: "app1", name: "app1-pki", patch: Array(patch.utf8), fieldManager: manager)
    }

    @Test func aNewValueRenewsOnceAndSaysWhoAsked() throws {
        let rig = try Rig()
        defer { rig.api.stop() }
        try rig.createPki()
        _ = rig.reconcile()
        let first = try rig.pki().status?.serialNumber
        _ = rig.reconcile()
        #expect(try rig.pki().status?.serialNumber == first, "nothing asked, nothing issued")

        try annotate(rig, "2026-11-26T23:40:00Z")
        _ = rig.reconcile()
        let second = try rig.pki().status?.serialNumber
        #expect(second != first, "renewed on request")
        #expect(try rig.pki().status?.lastRenewRequest == "2026-11-26T23:40:00Z")
        let leaf = try Certificate(pem: try #require(try rig.secret().bytes("tls.crt")))
        #expect(leaf.serialNumberHex == second)
        let renewed = try rig.events(about: "Pki", "app1-pki").filter { $0.hasPrefix("Normal Renewed") }
        #expect(renewed.count == 1)
        #expect(renewed.first?.contains("on request: certgate.dev/renew=2026-11-26T23:40:00Z set by kubectl-annotate") == true, "\(renewed)")

        _ = rig.reconcile()
        _ = rig.reconcile()
        #expect(try rig.pki().status?.serialNumber == second, "the same value again does nothing")

        try annotate(rig, "again", manager: "certgate-renew")
        _ = rig.reconcile()
        #expect(try rig.pki().status?.serialNumber != second, "a new value renews again")
        #expect(try rig.events(about: "Pki", "app1-pki").last?.contains("set by certgate-renew") == true)
    }

    /// The Secret records the request its certificate answered: when the status write after
    /// a renewal conflicts, the retry writes the status and issues nothing more.
    @Test func aConflictAfterARenewalIssuesNoSecondCertificate() throws {
        let rig = try Rig()
        defer { rig.api.stop() }
        try rig.createPki()
        _ = rig.reconcile()
        try annotate(rig, "one")
        rig.api.failNext(1, status: 409, onlyRequestsEndingWith: "/pkis/app1-pki/status")
        guard case .retry = rig.reconcile() else { Issue.record("expected a retry after the conflict"); return }
        let key = try rig.secret().bytes("tls.key")
        #expect(try rig.secret().metadata.annotations?["certgate.dev/renew"] == "one")
        _ = rig.reconcile()
        #expect(try rig.secret().bytes("tls.key") == key, "one request, one key")
        #expect(try rig.pki().status?.lastRenewRequest == "one")
        #expect(try rig.events(about: "Pki", "app1-pki").filter { $0.hasPrefix("Normal Renewed") }.count == 1)
    }

    /// A Pki that sets none of the newer fields (renew annotation, secretTemplate, keystores,
    /// uris, emailAddresses, subject) gets the Secret it got before they existed: three data
    /// keys, one label, no annotation; and a renewal keeps it so.
    @Test func withoutTheNewerFieldsTheSecretIsAsBefore() throws {
        let rig = try Rig()
        defer { rig.api.stop() }
        try rig.createPki()
        _ = rig.reconcile()
        for pass in ["issued", "renewed"] {
            let secret = try rig.secret()
            #expect(secret.metadata.annotations == nil, "\(pass)")
            #expect(secret.metadata.labels == [PkiReconciler.pkiLabel: "app1-pki"], "\(pass)")
            #expect(Set((secret.data ?? [:]).keys) == ["tls.crt", "tls.key", "ca.crt"], "\(pass)")
            #expect(secret.type == "kubernetes.io/tls")
            let leaf = try Certificate(pem: try #require(secret.bytes("tls.crt")))
            #expect(leaf.subjectAlternativeNames.uris.isEmpty && leaf.subjectAlternativeNames.emailAddresses.isEmpty)
            #expect(leaf.subjectAttributes == SubjectAttributes())
            rig.clock.advance(1441 * 3600)
            _ = rig.reconcile()
        }
        #expect(try rig.pki().status?.lastRenewRequest == nil)
    }
}
