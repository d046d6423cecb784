import CertgateKube
import CertgateKubeTesting
import CertgatePKI
@testable import CertgateReconciler
import Foundation
import Testing

/// spec.secretTemplate's labels and annotations go on the Secret and are kept current
/// without a new certificate; certgate's own label wins; keys others set stay.
@Suite struct SecretTemplateTests {
    private func setTemplate(_ rig: Rig, _ template: String) throws {
        let patch = #"{"spec":{"secretTemplate":"# + template + "}}"
        let _: Pki = try rig.client.mergePatch(.pkis, namespace: "app1", name: "app1-pki", patch: Array(patch.utf8))
    }

    @Test func theTemplateIsCopiedAndKeptCurrent() throws {
        let rig = try Rig()
        defer { rig.api.stop() }
        try rig.createPki()
        try setTemplate(rig, #"{"labels":{"team":"payments","certgate.dev/pki":"mine"},"annotations":{"reflector/allowed":"true"}}"#)
        _ = rig.reconcile()
        var secret = try rig.secret()
        #expect(secret.metadata.labels?["team"] == "payments")
        #expect(secret.metadata.labels?["certgate.dev/pki"] == "app1-pki", "certgate's own label wins")
        #expect(secret.metadata.annotations?["reflector/allowed"] == "true")
        let serial = try rig.pki().status?.serialNumber

        // Someone else's label, then a template edit: a value changes, a key goes, one comes.
        let _: Secret = try rig.client.mergePatch(.secrets, namespace: "app1", name: "app1-pki",
                                                  patch: Array(#"{"metadata":{"labels":{"backup":"daily"}}}"#.utf8))
        try setTemplate(rig, #"{"labels":{"team":"checkout","tier":"web"},"annotations":null}"#)
        _ = rig.reconcile()
        secret = try rig.secret()
        #expect(secret.metadata.labels?["team"] == "checkout")
        #expect(secret.metadata.labels?["tier"] == "web")
        #expect(secret.metadata.annotations?["reflector/allowed"] == nil, "a key the template no longer names is removed")
        #expect(secret.metadata.labels?["backup"] == "daily", "a label someone else set stays")
        #expect(secret.metadata.labels?["certgate.dev/pki"] == "app1-pki")
        #expect(try rig.pki().status?.serialNumber == serial, "a template edit issues no certificate")

        try setTemplate(rig, "null")
        _ = rig.reconcile()
        secret = try rig.secret()
        #expect(secret.metadata.labels?["team"] == nil && secret.metadata.labels?["tier"] == nil)
        #expect(secret.metadata.annotations?[SecretMetadata.templateAnnotation] == nil)
        #expect(secret.metadata.labels?["backup"] == "daily")
    }

    @Test func theWebhookJudgesKeysAndValuesAndWarnsOnCertgatesOwn() {
        let pki = Pki(metadata: ObjectMeta(name: "web", namespace: "app1"), spec: PkiSpec(
            serviceName: "app1", dnsNames: ["app1.app1.svc"],
            secretTemplate: SecretTemplate(labels: ["Team Name": "x", "tier": "-web", "certgate.dev/pki": "other"],
                                           annotations: ["example.com/ok": "any text at all", "bad/key/x": "v"])))
        let judgement = judge(pki, namespace: "app1", policy: Policy(namespaces: ["app1": ["app1"]]))
        #expect(judgement.violations.map(\.description) == [
            #"spec.secretTemplate.labels[Team Name]: "Team Name" is not a valid label key: the name "Team Name" may hold only letters, digits, '-', '_' and '.'"#,
            #"spec.secretTemplate.labels[tier]: "-web" is not a valid label value: it must start and end with a letter or digit"#,
            #"spec.secretTemplate.annotations[bad/key/x]: "bad/key/x" is not a valid annotation key: it has more than one '/'"#,
        ])
        #expect(judgement.warnings.contains { $0.hasPrefix("spec.secretTemplate.labels[certgate.dev/pki]: certgate sets this label itself") })
    }
}
