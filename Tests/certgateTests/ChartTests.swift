import CertgateKube
import CertgateKubeTesting
import CertgateTestSupport
import Foundation
import Testing

/// The Helm chart's tests (Tests/Chart/test_chart.py) run with the Python packages that
/// scripts/setup --tests installs in .venv-test, and with this build's certgate binary to load the
/// policy the chart renders.
@Suite struct ChartTests {
    @Test func theChartLintsRendersAndChecksForTheREADMEsInstallCommands() throws {
        let python = repositoryRoot + "/.venv-test/bin/python"
        try #require(FileManager.default.isExecutableFile(atPath: python),
                     "\(python) is missing: run scripts/setup --tests (it installs helm-python-sdk and kubernetes-validate)")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["CERTGATE_BINARY=\(certgateBinary)", python, "-m", "unittest", "discover", "-s", repositoryRoot + "/Tests/Chart", "-v"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "\(text)")
        #expect(text.contains("\nOK"), "\(text)")
    }

    /// The chart's Deployment arguments, run by this build's binary against the test API
    /// server: the flags the chart passes exist and, in the default (self) mode, make the
    /// pod write its Secret, patch the chart's webhook configuration and serve what it wrote
    /// under the Service's name.
    @Test func theDeploymentsArgumentsRunTheSelfManagedModeAsInACluster() throws {
        let python = repositoryRoot + "/.venv-test/bin/python"
        try #require(FileManager.default.isExecutableFile(atPath: python), "\(python) is missing: run scripts/setup --tests")
        let rendered = try runProcess(python, [repositoryRoot + "/Tests/Chart/render.py"], timeout: 120)
        let objects = try #require(try JSONSerialization.jsonObject(with: Data(rendered.stdout.utf8)) as? [[String: Any]], "\(rendered.output)")
        func object(_ kind: String) throws -> [String: Any] { try #require(objects.first { $0["kind"] as? String == kind }) }
        let podSpec = try #require(((try object("Deployment"))["spec"] as? [String: Any]).flatMap { ($0["template"] as? [String: Any])?["spec"] as? [String: Any] })
        let container = try #require((podSpec["containers"] as? [[String: Any]])?.first)
        let chartArguments = try #require(container["args"] as? [String])
        let policy = try #require(((try object("ConfigMap"))["data"] as? [String: String])?["policy.yaml"])

        let api = try TestAPIServer()
        defer { api.stop() }
        let client = try KubeClient(configuration: api.clusterConfiguration())
        let configurationJSON = try JSONSerialization.data(withJSONObject: try object("ValidatingWebhookConfiguration"))
        let configuration = try JSONDecoder().decode(ValidatingWebhookConfiguration.self, from: configurationJSON)
        _ = try client.create(.validatingWebhookConfigurations, namespace: nil, configuration)

        // What differs outside a pod: loopback ports, the policy file's path, a kubeconfig instead of the service account.
        let directory = TemporaryDirectory()
        try policy.write(toFile: directory.file("policy.yaml"), atomically: true, encoding: .utf8)
        try api.writeKubeconfig(to: directory.file("kubeconfig"))
        let port = freePort()
        var arguments = chartArguments.map { argument -> String in
            if argument.hasPrefix("--policy=") { return "--policy=\(directory.file("policy.yaml"))" }
            if argument.hasPrefix("--port=") { return "--port=\(port)" }
            if argument.hasPrefix("--metrics-address=") { return "--metrics-address=0" }
            return argument
        }
        arguments += ["--address=127.0.0.1", "--kubeconfig=\(directory.file("kubeconfig"))"]
        let (server, log) = try startCertgate(arguments, environment: ["POD_NAMESPACE": "certgate", "HOME": directory.path])
        defer { if server.isRunning { server.terminate() } }

        let name = try #require((configuration.metadata.name))
        let bundle = eventually {
            (try? client.get(.validatingWebhookConfigurations, namespace: nil, name: name, as: ValidatingWebhookConfiguration.self))?
                .webhooks?.first?.clientConfig.caBundle
        }
        guard let caBundle = bundle.flatMap({ Data(base64Encoded: $0) }) else {
            server.terminate()
            server.waitUntilExit()
            let lines = String(decoding: log.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            Issue.record("the chart's webhook configuration got no CA bundle within 30 s; certgate \(arguments.joined(separator: " ")) printed:\n\(lines)")
            return
        }
        let secretName = try #require(chartArguments.first { $0.hasPrefix("--tls-secret=") }?.split(separator: "=").last.map(String.init))
        let secret = try client.get(.secrets, namespace: "certgate", name: secretName, as: Secret.self)
        #expect(secret.bytes("ca.crt") == Array(caBundle))

        // The API server's call: the Service's DNS name, verified against the bundle.
        try caBundle.write(to: URL(fileURLWithPath: directory.file("bundle.pem")))
        let host = "\(name).certgate.svc"
        let ready = eventually {
            (try? runProcess("curl", ["-sS", "--max-time", "2", "--cacert", directory.file("bundle.pem"),
                                      "--resolve", "\(host):\(port):127.0.0.1", "https://\(host):\(port)/readyz"]))
                .flatMap { $0.stdout == "ok\n" ? true : nil }
        }
        #expect(ready == true, "ready over TLS under the Service's name with the patched bundle")

        // Leader election on the Lease the chart's Role lets it update.
        let leaseName = try #require(chartArguments.first { $0.hasPrefix("--leader-elect-resource-name=") }?.split(separator: "=").last.map(String.init))
        let holder = eventually {
            (try? client.get(.leases, namespace: "certgate", name: leaseName, as: Lease.self))?.spec?.holderIdentity.flatMap { $0.isEmpty ? nil : $0 }
        }
        #expect(holder != nil, "no replica holds the Lease \(leaseName)")
        kill(server.processIdentifier, SIGTERM)
        server.waitUntilExit()
        let lines = String(decoding: log.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(server.terminationStatus == 0, "\(lines)")
    }
}
