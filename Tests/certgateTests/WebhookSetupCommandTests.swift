import CertgateKube
import CertgateKubeTesting
import CertgateTestSupport
import Foundation
import Testing

@Suite struct WebhookSetupCommandTests {
    /// What a developer runs from a laptop: one command registers the webhook with its own
    /// certificate, and the API server could then call it at that URL.
    @Test func webhookURLRegistersTheWebhookWithTheSelfManagedCertificate() throws {
        let api = try TestAPIServer()
        defer { api.stop() }
        let directory = TemporaryDirectory()
        try api.writeKubeconfig(to: directory.file("kubeconfig"))
        let client = try KubeClient(configuration: api.clusterConfiguration())
        let port = freePort()
        let url = "https://127.0.0.1:\(port)/validate"
        let (server, _) = try startCertgate(["serve", "--address", "127.0.0.1", "--port", String(port), "--metrics-address", "0",
                                             "--kubeconfig", directory.file("kubeconfig"), "--reconcile=false", "--namespace", "certgate",
                                             "--webhook-url", url])
        defer { if server.isRunning { server.terminate() } }

        let registered = eventually {
            try? client.get(.validatingWebhookConfigurations, namespace: nil, name: "certgate", as: ValidatingWebhookConfiguration.self)
        }
        let webhook = try #require(registered?.webhooks?.first, "the webhook was registered within 30 s")
        #expect(registered?.metadata.labels?["app.kubernetes.io/name"] == "certgate")
        #expect(webhook.clientConfig.url == url)
        let secret = try client.get(.secrets, namespace: "certgate", name: "certgate-webhook-tls", as: Secret.self)
        let bundle = try #require(secret.bytes("ca.crt"))
        #expect(webhook.clientConfig.caBundle == Data(bundle).base64EncodedString())

        // The API server's view: trust the registered bundle, POST a review to the registered URL.
        let caFile = directory.file("bundle.pem")
        try Data(bundle).write(to: URL(fileURLWithPath: caFile))
        let review = repositoryRoot + "/examples/admissionreview-typo.json"
        let answer = try runProcess("curl", ["-sS", "--max-time", "5", "--cacert", caFile, "-H", "content-type: application/json",
                                             "--data-binary", "@\(review)", url + "?timeout=10s"])
        #expect(answer.stdout.contains("\"allowed\":false"), "\(answer.output)")
        kill(server.processIdentifier, SIGTERM)
        server.waitUntilExit()
        #expect(server.terminationStatus == 0)
    }

    @Test func webhookURLWithCertificateFilesRegistersTheGivenCABundle() throws {
        let run = try ServeWithCertificateFiles(flags: ["--webhook-failure-policy", "Ignore"])
        defer { run.stop() }
        let registered = eventually { run.registered() }
        let webhook = try #require(registered?.webhooks?.first, "the webhook was registered within 30 s")
        #expect(webhook.clientConfig.caBundle == (try Data(contentsOf: URL(fileURLWithPath: run.pki.caFile))).base64EncodedString())
        #expect(webhook.failurePolicy == "Ignore")
        #expect(run.api.object(.secrets, namespace: "default", name: "certgate-webhook-tls") == nil, "no Secret with certificate files")
    }

    /// A rotated CA file (the new CA beside the old) is registered again while serve runs;
    /// a file that stops parsing leaves the registration as it was and says why.
    @Test func aChangedWebhookCAFileIsRegisteredAgain() throws {
        let run = try ServeWithCertificateFiles(flags: ["--certificate-check-interval", "200ms"])
        defer { run.stop() }
        func registeredBundle() -> String? { run.registered()?.webhooks?.first?.clientConfig.caBundle }
        let original = try String(contentsOfFile: run.pki.caFile, encoding: .utf8)
        #expect(eventually { registeredBundle().flatMap { $0 == Data(original.utf8).base64EncodedString() ? true : nil } } == true)

        let rotated = original + (try String(contentsOfFile: run.pki.clientCAFile, encoding: .utf8))
        try rotated.write(toFile: run.bundleFile, atomically: true, encoding: .utf8)
        #expect(eventually { registeredBundle().flatMap { $0 == Data(rotated.utf8).base64EncodedString() ? true : nil } } == true,
                "the rotated bundle was registered within 30 s")

        try "not a certificate\n".write(toFile: run.bundleFile, atomically: true, encoding: .utf8)
        Thread.sleep(forTimeInterval: 1)  // five checks of the file
        #expect(registeredBundle() == Data(rotated.utf8).base64EncodedString(), "a broken file leaves the registration in place")
        kill(run.server.processIdentifier, SIGTERM)
        run.server.waitUntilExit()
        let lines = String(decoding: run.log.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(run.server.terminationStatus == 0, "\(lines)")
        #expect(lines.contains("webhook CA bundle not registered; the registration in place stays"), "\(lines)")
    }

    @Test func contradictoryCertificateFlagsAreRefusedWithTheReason() throws {
        let cases: [([String], String)] = [
            (["--tls-secret", "x", "--tls-cert-file", "a", "--tls-key-file", "b"], "two sources of the serving certificate"),
            (["--webhook-url", "http://127.0.0.1:8443/validate"], "must start with https://"),
            (["--webhook-url", "https://127.0.0.1:8443/validate", "--tls-cert-file", "a", "--tls-key-file", "b"], "needs --webhook-ca-file"),
            (["--tls-secret", "x"], "--tls-secret needs --tls-hosts"),
            (["--webhook-url", "https://127.0.0.1:8443/validate", "--webhook-failure-policy", "fail"], "The value 'fail' is invalid for '--webhook-failure-policy <webhook-failure-policy>'. Please provide one of 'Fail' and 'Ignore'."),
        ]
        for (arguments, message) in cases {
            let result = try runProcess(certgateBinary, ["serve"] + arguments, timeout: 20)
            #expect(result.status == 64, "\(arguments): \(result.output)")
            #expect(result.stderr.contains(message), "\(arguments): \(result.output)")
        }
        // With no cluster anywhere, --webhook-url has nowhere to register: an error, not a silent skip.
        let home = TemporaryDirectory()
        let result = try runProcess("/usr/bin/env", ["-i", "HOME=\(home.path)", certgateBinary, "serve", "--address", "127.0.0.1",
                                                     "--port", String(freePort()), "--metrics-address", "0",
                                                     "--webhook-url", "https://127.0.0.1:8443/validate"], timeout: 20)
        #expect(result.status == 64, "\(result.output)")
        #expect(result.stderr.contains("--webhook-url registers the webhook in a cluster, and none is configured: pass --kubeconfig"), "\(result.output)")
    }
}

/// `serve` against a test API server, with certificate files, registering --webhook-url as
/// the configuration certgate-dev with the CA bundle in `bundleFile` (a copy of the test CA,
/// free to rewrite), plus `flags`.
private struct ServeWithCertificateFiles {
    let api: TestAPIServer
    let directory = TemporaryDirectory()
    let pki: TestPKI
    let client: KubeClient
    let bundleFile: String
    let server: Process
    let log: Pipe

    init(flags: [String]) throws {
        api = try TestAPIServer()
        pki = try TestPKI(in: directory)
        try api.writeKubeconfig(to: directory.file("kubeconfig"))
        client = try KubeClient(configuration: api.clusterConfiguration())
        bundleFile = directory.file("bundle.pem")
        try FileManager.default.copyItem(atPath: pki.caFile, toPath: bundleFile)
        let port = freePort()
        (server, log) = try startCertgate(["serve", "--address", "127.0.0.1", "--port", String(port), "--metrics-address", "0",
                                           "--kubeconfig", directory.file("kubeconfig"), "--reconcile=false",
                                           "--tls-cert-file", pki.certificateFile, "--tls-key-file", pki.keyFile,
                                           "--webhook-url", "https://localhost:\(port)/validate", "--webhook-ca-file", bundleFile,
                                           "--webhook-configuration", "certgate-dev"] + flags)
    }

    func registered() -> ValidatingWebhookConfiguration? {
        try? client.get(.validatingWebhookConfigurations, namespace: nil, name: "certgate-dev", as: ValidatingWebhookConfiguration.self)
    }

    func stop() {
        if server.isRunning { server.terminate() }
        api.stop()
    }
}
