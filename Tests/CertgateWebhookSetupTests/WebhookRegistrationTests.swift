import CertgatePKI
import CertgateKube
import CertgateKubeTesting
import CertgateWebhookSetup
import Foundation
import Testing

@Suite struct WebhookRegistrationTests {
    @Test func registersThenUpdatesOnlyWhatChanged() throws {
        let api = try TestAPIServer()
        defer { api.stop() }
        let client = try KubeClient(configuration: api.clusterConfiguration())
        var registration = WebhookRegistration(name: "certgate", url: "https://192.168.1.20:8443/validate", caBundle: Array("PEM".utf8))
        #expect(try registration.apply(with: client) == .created)

        let stored = try #require(api.object(.validatingWebhookConfigurations, namespace: nil, name: "certgate"))
        #expect((stored["metadata"] as? [String: Any])?["labels"] as? [String: String] == ["app.kubernetes.io/name": "certgate"])
        let webhook = try #require((stored["webhooks"] as? [[String: Any]])?.first)
        #expect(webhook["name"] as? String == "pkis.certgate.dev")
        #expect(webhook["clientConfig"] as? [String: String] == ["url": "https://192.168.1.20:8443/validate", "caBundle": "UEVN"])
        let rule = try #require((webhook["rules"] as? [[String: Any]])?.first)
        #expect(rule["operations"] as? [String] == ["CREATE", "UPDATE"])
        #expect(rule["apiGroups"] as? [String] == ["certgate.dev"])
        #expect(webhook["admissionReviewVersions"] as? [String] == ["v1"])
        #expect(webhook["sideEffects"] as? String == "None")
        #expect(webhook["failurePolicy"] as? String == "Fail")
        #expect(webhook["matchPolicy"] as? String == "Equivalent")

        #expect(try registration.apply(with: client) == .unchanged)
        registration.url = "https://192.168.1.21:8443/validate"
        #expect(try registration.apply(with: client) == .updated)
        let updated = try client.get(.validatingWebhookConfigurations, namespace: nil, name: "certgate", as: ValidatingWebhookConfiguration.self)
        #expect(updated.webhooks?.first?.clientConfig.url == "https://192.168.1.21:8443/validate")
    }

    @Test func aConfigurationThatIsNotCertgatesIsLeftAlone() throws {
        let api = try TestAPIServer()
        defer { api.stop() }
        let client = try KubeClient(configuration: api.clusterConfiguration())
        _ = try client.create(.validatingWebhookConfigurations, namespace: nil,
                              ValidatingWebhookConfiguration(metadata: ObjectMeta(name: "certgate"),
                                                             webhooks: [.init(name: "other.example.com", clientConfig: .init(url: "https://other"))]))
        let error = #expect(throws: WebhookRegistrationError.self) {
            try WebhookRegistration(name: "certgate", url: "https://127.0.0.1:8443/validate", caBundle: []).apply(with: client)
        }
        #expect(error?.description.contains("is not Certgate's") == true)
        let kept = try client.get(.validatingWebhookConfigurations, namespace: nil, name: "certgate", as: ValidatingWebhookConfiguration.self)
        #expect(kept.webhooks?.first?.name == "other.example.com")
    }

    @Test func customResourcesRefuseAStrategicMergePatch() throws {
        let api = try TestAPIServer()
        defer { api.stop() }
        let client = try KubeClient(configuration: api.clusterConfiguration())
        let error = #expect(throws: APIStatus.self) {
            let _: ValidatingWebhookConfiguration = try client.strategicMergePatch(.pkis, namespace: "app1", name: "x", patch: Array("{}".utf8))
        }
        #expect(error?.code == 415)
    }
}
