import CertgatePKI
import ArgumentParser
import CertgateCrypto
import CertgateKube
import CertgateNet
import CertgateTLS
import CertgateWebhookSetup
import Logging

/// How the webhook gets its serving certificate and how the API server learns to call it.
struct WebhookSetupOptions: ParsableArguments {
    @Option(help: "Keep a self-managed CA and serving certificate in this Secret (in --namespace), serve it, and keep the CA bundle of --webhook-configuration current. Not with --tls-cert-file. Default with --webhook-url: certgate-webhook-tls.")
    var tlsSecret: String?

    @Option(help: "Comma-separated DNS names and IP addresses on the self-managed serving certificate (the Service's names in a cluster). Default: the host of --webhook-url.")
    var tlsHosts: String?

    @Option(help: "The ValidatingWebhookConfiguration whose CA bundle the self-managed certificate keeps current, and which --webhook-url registers.")
    var webhookConfiguration = "certgate"

    @Option(help: "Register --webhook-configuration with this URL (https://HOST:PORT/validate) instead of a Service, for a webhook served outside the cluster.")
    var webhookUrl: String?

    @Option(help: "PEM CA bundle registered with --webhook-url when --tls-cert-file is given.", completion: .file())
    var webhookCaFile: String?

    @Option(help: "What the API server does with Pki writes when the webhook registered by --webhook-url does not answer.")
    var webhookFailurePolicy: FailurePolicy = .Fail

    /// What the API server does with a request when the webhook does not answer, spelt as
    /// the ValidatingWebhookConfiguration spells it.
    enum FailurePolicy: String, ExpressibleByArgument, CaseIterable {
        case Fail, Ignore
    }

    /// The Secret of the self-managed certificate.
    var secretName: String { tlsSecret ?? "certgate-webhook-tls" }

    /// The host of --webhook-url, without brackets around an IPv6 literal.
    func webhookHost() throws -> String? {
        guard let webhookUrl else { return nil }
        guard webhookUrl.hasPrefix("https://") else {
            throw ValidationError("--webhook-url must start with https:// (the API server calls webhooks over TLS only), not \"\(webhookUrl)\"")
        }
        guard let address = HostPort(httpsURL: webhookUrl) else {
            throw ValidationError("--webhook-url \"\(webhookUrl)\" is not https://HOST[:PORT]/PATH (an IPv6 host in brackets)")
        }
        return address.host
    }

    /// Checks the flags against each other and against the serving certificate files.
    func validate(tlsCertFile: String?, clientCaFile: String?) throws {
        _ = try webhookHost()
        if webhookCaFile != nil && webhookUrl == nil { throw ValidationError("--webhook-ca-file goes with --webhook-url") }
        if let tlsSecret, tlsCertFile != nil {
            throw ValidationError("--tls-secret \(tlsSecret) and --tls-cert-file are two sources of the serving certificate; give one")
        }
        if tlsCertFile != nil, webhookUrl != nil, webhookCaFile == nil {
            throw ValidationError("--webhook-url with --tls-cert-file needs --webhook-ca-file: the CA bundle the API server verifies that certificate with")
        }
        if webhookUrl != nil || tlsSecret != nil, webhookConfiguration.isEmpty {
            throw ValidationError("--webhook-configuration names no ValidatingWebhookConfiguration")
        }
        if isSelfManaged(tlsCertFile: tlsCertFile) {
            if clientCaFile != nil {
                throw ValidationError("--client-ca-file needs --tls-cert-file: the self-managed serving certificate does not take a client CA")
            }
            _ = try selfManagedHosts()
        }
    }

    func isSelfManaged(tlsCertFile: String?) -> Bool {
        tlsCertFile == nil && (tlsSecret != nil || webhookUrl != nil)
    }

    func selfManagedHosts() throws -> [String] {
        if let tlsHosts { return try parseHosts(tlsHosts, flag: "--tls-hosts") }
        if let host = try webhookHost() { return [host] }
        throw ValidationError("--tls-secret needs --tls-hosts: the names the API server calls the webhook by (such as certgate.certgate.svc)")
    }

    /// The registration --webhook-url asks for, with `caBundle` (PEM).
    func registration(caBundle: [UInt8]) -> WebhookRegistration? {
        guard let webhookUrl else { return nil }
        var registration = WebhookRegistration(name: webhookConfiguration, url: webhookUrl, caBundle: caBundle)
        registration.failurePolicy = webhookFailurePolicy.rawValue
        return registration
    }

    /// The self-managed certificate `serve` keeps with `client`, serving through `serving`.
    func selfManagedCertificate(client: KubeClient, namespace: String, serving: ServingCertificate,
                                logger: Logger) throws -> SelfManagedCertificate {
        var options = SelfManagedCertificate.Options(namespace: namespace, secretName: secretName,
                                                     hosts: try selfManagedHosts(), webhookConfigurationName: webhookConfiguration)
        options.registration = registration(caBundle: [])
        return SelfManagedCertificate(client: client, serving: serving, options: options, logger: logger)
    }
}
