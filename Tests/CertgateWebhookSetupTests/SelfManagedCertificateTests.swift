import CertgatePKI
import CertgateLocking
import CertgateCrypto
import CertgateHTTP
import CertgateKube
import CertgateKubeTesting
import CertgateMetrics
import CertgateNet
import CertgateTLS
import CertgateTestSupport
import CertgateWebhookSetup
import Foundation
import Logging
import Synchronization
import Testing

/// A webhook server on loopback that serves whatever the self-managed certificate installs,
/// next to a test API server that holds the Secret and the webhook configuration.
final class SelfManagedFixture: @unchecked Sendable {
    static let hosts = ["certgate.certgate.svc", "certgate.certgate.svc.cluster.local"]
    let api: TestAPIServer
    let client: KubeClient
    let serving = ServingCertificate()
    let group: EventLoopGroup
    let server: HTTPServer
    let port: UInt16
    let directory = TemporaryDirectory()
    /// Seconds added to the real clock, so tests can move time forward.
    let skew = Atomic<Int64>(0)

    init(createWebhookConfiguration: Bool = true) throws {
        api = try TestAPIServer()
        client = try KubeClient(configuration: api.clusterConfiguration())
        group = try EventLoopGroup(count: 1, namePrefix: "webhook")
        var router = Router()
        router.addHealthRoutes(ReadinessChecks())
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        server = HTTPServer(configuration: HTTPServerConfiguration(name: "webhook", addresses: [try SocketAddress(host: "127.0.0.1", port: 0)], tls: serving),
                            router: router, group: group, metrics: ServerMetrics(registry: MetricsRegistry()), logger: logger)
        port = try server.start()[0].port
        if createWebhookConfiguration {
            // As the chart installs it: a Service reference and no CA bundle yet.
            var webhook = ValidatingWebhookConfiguration.Webhook(
                name: "pkis.certgate.dev",
                clientConfig: .init(service: .init(namespace: "certgate", name: "certgate", path: "/validate", port: 443)))
            webhook.rules = [.init(apiGroups: ["certgate.dev"], apiVersions: ["v1"], operations: ["CREATE", "UPDATE"], resources: ["pkis"])]
            webhook.sideEffects = "None"
            webhook.admissionReviewVersions = ["v1"]
            _ = try client.create(.validatingWebhookConfigurations, namespace: nil,
                                  ValidatingWebhookConfiguration(metadata: ObjectMeta(name: "certgate"), webhooks: [webhook]))
        }
    }

    deinit {
        server.shutdown(gracePeriod: 1)
        group.stopAndWait()
        api.stop()
    }

    func manager(servingValidity: Int64 = 365 * 86400, authorityValidity: Int64 = 5 * 365 * 86400,
                 hosts: [String] = SelfManagedFixture.hosts, backdate: Int64 = 300) -> SelfManagedCertificate {
        var options = SelfManagedCertificate.Options(namespace: "certgate", secretName: "certgate-webhook-tls", hosts: hosts,
                                                     webhookConfigurationName: "certgate")
        options.servingValidity = servingValidity
        options.authorityValidity = authorityValidity
        options.backdate = backdate
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return SelfManagedCertificate(client: client, serving: serving, options: options, logger: logger,
                                      clock: { [self] in Int64(Date().timeIntervalSince1970) + skew.load(ordering: .relaxed) })
    }

    var secret: Secret { get throws { try client.get(.secrets, namespace: "certgate", name: "certgate-webhook-tls") } }

    /// The webhook configuration as stored, as JSON.
    var webhooks: [[String: Any]] {
        api.object(.validatingWebhookConfigurations, namespace: nil, name: "certgate")?["webhooks"] as? [[String: Any]] ?? []
    }

    func caBundles() -> [String] {
        webhooks.map { (($0["clientConfig"] as? [String: Any])?["caBundle"] as? String) ?? "" }
    }

    /// What `openssl s_client` sees: verification against `caBundle` for the service name,
    /// and the serial of the certificate served.
    func handshake(trusting caBundle: [UInt8]) throws -> (verified: Bool, serial: String) {
        let caFile = directory.file("bundle-\(UUID().uuidString).pem")
        try Data(caBundle).write(to: URL(fileURLWithPath: caFile))
        let session = try runProcess("openssl", ["s_client", "-connect", "127.0.0.1:\(port)", "-CAfile", caFile,
                                                 "-servername", Self.hosts[0], "-verify_hostname", Self.hosts[0]],
                                     input: "", timeout: 20)
        let serial = try runProcess("openssl", ["x509", "-noout", "-serial"], input: session.stdout, timeout: 20)
        return (session.stdout.contains("Verify return code: 0 (ok)"),
                serial.stdout.trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "serial=", with: ""))
    }
}

func serialOf(_ pem: [UInt8]?) throws -> String {
    try Certificate(pem: pem ?? []).serialNumberHex
}

@Suite struct SelfManagedCertificateTests {
    @Test func createsTheSecretPatchesTheBundleAndServesTheCertificate() throws {
        let fixture = try SelfManagedFixture()
        #expect(fixture.serving.context == nil)
        let manager = fixture.manager()
        #expect(manager.readinessProblem != nil)

        let outcome = try manager.synchronize()
        #expect(outcome.wroteSecret && outcome.installed && outcome.patchedBundle)
        #expect(manager.readinessProblem == nil)

        let secret = try fixture.secret
        #expect(secret.type == "kubernetes.io/tls")
        #expect(secret.metadata.labels?["app.kubernetes.io/managed-by"] == "certgate")
        #expect(Set(secret.data?.keys.map { $0 } ?? []) == ["tls.crt", "tls.key", "ca.crt", "ca.key"])
        let served = try serialOf(secret.bytes("tls.crt"))
        #expect(outcome.serial == served)

        // The webhook configuration trusts the Secret's CA, and the rest of it is untouched.
        let bundle = try #require(secret.bytes("ca.crt"))
        #expect(fixture.caBundles() == [Data(bundle).base64EncodedString()])
        #expect((fixture.webhooks.first?["rules"] as? [[String: Any]])?.first?["resources"] as? [String] == ["pkis"])
        #expect(((fixture.webhooks.first?["clientConfig"] as? [String: Any])?["service"] as? [String: Any])?["name"] as? String == "certgate")

        // A real TLS client that trusts only that bundle verifies the service name and sees the Secret's certificate.
        let handshake = try fixture.handshake(trusting: bundle)
        #expect(handshake.verified)
        #expect(handshake.serial == served)
        let text = try runProcess("openssl", ["x509", "-noout", "-ext", "subjectAltName"], input: String(decoding: secret.bytes("tls.crt")!, as: UTF8.self))
        #expect(text.stdout.contains("DNS:certgate.certgate.svc, DNS:certgate.certgate.svc.cluster.local"), "\(text.output)")

        // Nothing is due: the next pass writes nothing.
        let version = secret.metadata.resourceVersion
        let again = try manager.synchronize()
        #expect(!again.wroteSecret && !again.installed && !again.patchedBundle)
        #expect(try fixture.secret.metadata.resourceVersion == version)
    }

    @Test func aDueServingCertificateIsRenewedUnderTheSameCA() throws {
        let fixture = try SelfManagedFixture()
        let manager = fixture.manager(servingValidity: 3000, backdate: 2400)  // valid by the real clock after the skew below
        let first = try manager.synchronize()
        let bundle = try #require(try fixture.secret.bytes("ca.crt"))

        fixture.skew.store(1900, ordering: .relaxed)  // not yet two thirds through
        #expect(try manager.synchronize().wroteSecret == false)
        fixture.skew.store(2100, ordering: .relaxed)
        let renewed = try manager.synchronize()
        #expect(renewed.wroteSecret && renewed.installed)
        #expect(renewed.serial != first.serial)
        #expect(!renewed.patchedBundle, "the CA did not change, so neither does the bundle")
        #expect(try fixture.secret.bytes("ca.crt") == bundle)
        let handshake = try fixture.handshake(trusting: bundle)
        #expect(handshake.verified && handshake.serial == renewed.serial)
    }

    @Test func aRenewedCAIsPatchedIntoTheBundleNextToThePreviousOne() throws {
        let fixture = try SelfManagedFixture()
        let manager = fixture.manager(servingValidity: 1000, authorityValidity: 3000, backdate: 2400)
        try manager.synchronize()
        let oldBundle = try #require(try fixture.secret.bytes("ca.crt"))
        let oldCA = try Certificate(pem: oldBundle)

        fixture.skew.store(2100, ordering: .relaxed)
        let renewed = try manager.synchronize()
        #expect(renewed.wroteSecret && renewed.installed && renewed.patchedBundle)
        let newBundle = try #require(try fixture.secret.bytes("ca.crt"))
        let authorities = try Certificate.chain(pem: newBundle)
        #expect(authorities.count == 2)
        #expect(authorities[0].serialNumberHex != oldCA.serialNumberHex)
        #expect(authorities[1].serialNumberHex == oldCA.serialNumberHex, "the old CA stays trusted while it is valid")
        #expect(fixture.caBundles() == [Data(newBundle).base64EncodedString()])
        let handshake = try fixture.handshake(trusting: Array(try authorities[0].pem().utf8))
        #expect(handshake.verified && handshake.serial == renewed.serial)
    }

    @Test func aDeletedSecretIsMadeAgainAndTheBundleFollows() throws {
        let fixture = try SelfManagedFixture()
        let manager = fixture.manager()
        let first = try manager.synchronize()
        try fixture.client.delete(.secrets, namespace: "certgate", name: "certgate-webhook-tls")

        let second = try manager.synchronize()
        #expect(second.wroteSecret && second.installed && second.patchedBundle)
        #expect(second.serial != first.serial)
        let bundle = try #require(try fixture.secret.bytes("ca.crt"))
        #expect(fixture.caBundles() == [Data(bundle).base64EncodedString()])
        let handshake = try fixture.handshake(trusting: bundle)
        #expect(handshake.verified && handshake.serial == second.serial)
    }

    @Test func newHostsGetANewServingCertificate() throws {
        let fixture = try SelfManagedFixture()
        _ = try fixture.manager().synchronize()
        let wider = try fixture.manager(hosts: SelfManagedFixture.hosts + ["127.0.0.1"]).synchronize()
        #expect(wider.wroteSecret)
        let text = try runProcess("openssl", ["x509", "-noout", "-ext", "subjectAltName"],
                                  input: String(decoding: try fixture.secret.bytes("tls.crt")!, as: UTF8.self))
        #expect(text.stdout.contains("IP Address:127.0.0.1"), "\(text.output)")
    }

    @Test func twoReplicasStartingTogetherServeOnePair() throws {
        let fixture = try SelfManagedFixture()
        let first = fixture.manager()
        let otherServing = ServingCertificate()
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let second = SelfManagedCertificate(client: fixture.client, serving: otherServing, options: first.options, logger: logger)
        let outcomes = Locked<[String]>([])
        let done = DispatchGroup()
        for manager in [first, second] {
            DispatchQueue.global().async(group: done) {
                if let outcome = try? manager.synchronize() { outcomes.withLock { $0.append(outcome.serial) } }
            }
        }
        done.wait()
        let serials = outcomes.withLock { $0 }
        #expect(serials.count == 2)
        #expect(Set(serials).count == 1, "both replicas serve the pair in the Secret: \(serials)")
        #expect(try serialOf(fixture.secret.bytes("tls.crt")) == serials.first)
    }

    @Test func aSecretThatIsNotCertgatesIsNeverOverwritten() throws {
        let fixture = try SelfManagedFixture()
        _ = try fixture.client.create(.secrets, namespace: "certgate",
                                      Secret(metadata: ObjectMeta(name: "certgate-webhook-tls", namespace: "certgate"), data: ["password": Array("hunter2".utf8)]))
        let error = #expect(throws: SelfManagedCertificateError.self) { try fixture.manager().synchronize() }
        #expect(error?.description.contains("is not Certgate's") == true, "\(String(describing: error))")
        #expect(try fixture.secret.bytes("password") == Array("hunter2".utf8))
        #expect(fixture.serving.context == nil)
    }

    @Test func aMissingWebhookConfigurationIsReportedAndPatchedOnceItExists() throws {
        let fixture = try SelfManagedFixture(createWebhookConfiguration: false)
        let manager = fixture.manager()
        let error = #expect(throws: SelfManagedCertificateError.self) { try manager.synchronize() }
        #expect(error?.description.contains("ValidatingWebhookConfiguration certgate does not exist yet") == true)
        #expect(manager.readinessProblem == nil, "the webhook serves meanwhile")

        let bundle = try #require(try fixture.secret.bytes("ca.crt"))
        _ = try WebhookRegistration(name: "certgate", url: "https://127.0.0.1:\(fixture.port)/validate", caBundle: Array("stale".utf8))
            .apply(with: fixture.client)
        #expect(try manager.synchronize().patchedBundle)
        #expect(fixture.caBundles() == [Data(bundle).base64EncodedString()])
    }

    @Test func theBackgroundLoopRenewsOnTime() throws {
        let fixture = try SelfManagedFixture()
        let manager = fixture.manager(servingValidity: 6)  // renewed when 2 s are left
        try manager.start()
        defer { manager.stop() }
        var first: String?
        var later: String?
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if let pem = try? fixture.secret.bytes("tls.crt"), let serial = try? serialOf(pem) {
                if first == nil { first = serial } else if serial != first { later = serial; break }
            }
            Thread.sleep(forTimeInterval: 0.2)
        }
        let renewed = try #require(later, "the Secret was not renewed within 20 s")
        let bundle = try #require(try fixture.secret.bytes("ca.crt"))
        // The installed pair follows the Secret within the same pass.
        var served = ""
        for _ in 0..<20 {
            served = try fixture.handshake(trusting: bundle).serial
            if served != first { break }
            Thread.sleep(forTimeInterval: 0.2)
        }
        #expect(served != first)
        let current = try serialOf(fixture.secret.bytes("tls.crt"))
        #expect(served == renewed || served == current, "the server serves a renewed pair from the Secret")
    }
}

@Suite struct SelfManagedRegistrationTests {
    @Test func aURLWebhookIsRegisteredWithTheSelfManagedBundle() throws {
        let fixture = try SelfManagedFixture(createWebhookConfiguration: false)
        let url = "https://127.0.0.1:\(fixture.port)/validate"
        var options = fixture.manager(hosts: ["127.0.0.1"]).options
        options.registration = WebhookRegistration(name: "certgate", url: url, caBundle: [])
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let manager = SelfManagedCertificate(client: fixture.client, serving: fixture.serving, options: options, logger: logger)
        #expect(try manager.synchronize().patchedBundle)
        let bundle = try #require(try fixture.secret.bytes("ca.crt"))
        let registered = try fixture.client.get(.validatingWebhookConfigurations, namespace: nil, name: "certgate",
                                                as: ValidatingWebhookConfiguration.self)
        #expect(registered.webhooks?.first?.clientConfig == .init(url: url, caBundle: Data(bundle).base64EncodedString()))
        #expect(try manager.synchronize().patchedBundle == false)
    }
}
