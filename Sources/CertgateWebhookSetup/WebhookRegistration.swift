import CertgatePKI
import CertgateJSON
import CertgateKube

/// The ValidatingWebhookConfiguration for Pkis that `certgate serve --webhook-url` registers,
/// pointing the API server at a URL (a developer's machine) instead of a Service: the same
/// webhook the Helm chart installs (certgate.dev/v1 pkis, CREATE and UPDATE, admission
/// review v1, no side effects, matchPolicy Equivalent).
public struct WebhookRegistration: Sendable {
    /// The webhook's name, as the API server quotes it in denials.
    public static let webhookName = "pkis.certgate.dev"
    public static let nameLabel = ("app.kubernetes.io/name", "certgate")

    /// The configuration's name.
    public var name: String
    public var url: String
    /// PEM bundle of the CA(s) that verify the webhook's serving certificate.
    public var caBundle: [UInt8]
    /// Fail or Ignore: what the API server does when the webhook does not answer.
    public var failurePolicy = "Fail"
    public var timeoutSeconds = 10

    public init(name: String, url: String, caBundle: [UInt8]) {
        self.name = name
        self.url = url
        self.caBundle = caBundle
    }

    public enum Outcome: Sendable, Equatable { case created, updated, unchanged }

    /// The configuration as it should be.
    public var desired: ValidatingWebhookConfiguration {
        var webhook = ValidatingWebhookConfiguration.Webhook(
            name: Self.webhookName,
            clientConfig: .init(url: url, caBundle: Base64.encode(caBundle)))
        webhook.rules = [.init(apiGroups: ["certgate.dev"], apiVersions: ["v1"], operations: ["CREATE", "UPDATE"],
                               resources: ["pkis"], scope: "Namespaced")]
        webhook.admissionReviewVersions = ["v1"]
        webhook.sideEffects = "None"
        webhook.failurePolicy = failurePolicy
        webhook.matchPolicy = "Equivalent"
        webhook.timeoutSeconds = timeoutSeconds
        return ValidatingWebhookConfiguration(metadata: ObjectMeta(name: name, labels: [Self.nameLabel.0: Self.nameLabel.1]),
                                              webhooks: [webhook])
    }

    /// Creates the configuration, or replaces its webhooks when they differ from ``desired``.
    /// A configuration of that name without the app.kubernetes.io/name=certgate label
    /// belongs to something else and is left alone (an error says so).
    @discardableResult
    public func apply(with client: KubeClient) throws -> Outcome {
        let wanted = desired
        for _ in 0..<5 {
            let existing: ValidatingWebhookConfiguration
            do {
                existing = try client.get(.validatingWebhookConfigurations, namespace: nil, name: name)
            } catch let status as APIStatus where status.isNotFound {
                do {
                    _ = try client.create(.validatingWebhookConfigurations, namespace: nil, wanted)
                    return .created
                } catch let status as APIStatus where status.isAlreadyExists {
                    continue
                }
            }
            guard existing.metadata.labels?[Self.nameLabel.0] == Self.nameLabel.1 else {
                throw WebhookRegistrationError(description: "ValidatingWebhookConfiguration \(name) exists without the label \(Self.nameLabel.0)=\(Self.nameLabel.1), so it is not Certgate's; delete it or pass another --webhook-configuration")
            }
            if existing.webhooks == wanted.webhooks { return .unchanged }
            var replacement = existing
            replacement.webhooks = wanted.webhooks
            do {
                _ = try client.update(.validatingWebhookConfigurations, namespace: nil, name: name, replacement)
                return .updated
            } catch let status as APIStatus where status.isConflict {
                continue
            }
        }
        throw WebhookRegistrationError(description: "ValidatingWebhookConfiguration \(name) kept changing while it was being updated")
    }
}

public struct WebhookRegistrationError: Error, CustomStringConvertible {
    public let description: String
}
