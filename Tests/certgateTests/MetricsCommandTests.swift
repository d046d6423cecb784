import CertgateKube
import CertgateKubeTesting
import CertgatePKI
import CertgateTestSupport
import Foundation
import Testing

/// What a Prometheus server scrapes from `certgate serve` with the reconciler running.
@Suite struct MetricsCommandTests {
    /// One series per Pki (expiry, renewal, Ready), the issuer's expiry, and nothing that
    /// `promtool check metrics` (the Prometheus project's linter) finds fault with; a deleted
    /// Pki's series go.
    @Test func aScrapeHasPerPkiSeriesAndPassesPromtool() throws {
        let promtool = try which("promtool")
        let running = try ServeWithPkis(["web", "api"])
        defer { running.stop() }
        let (client, metricsPort) = (running.client, running.metricsPort)
        func scrape() -> String? {
            guard let result = try? runProcess("curl", ["-sS", "--max-time", "5", "http://127.0.0.1:\(metricsPort)/metrics"]),
                  result.status == 0 else { return nil }
            return result.stdout
        }
        let ready = #"certgate_certificate_ready_status{namespace="app1",name="web",issuer="default",condition="True"} 1"#
        let text = try #require(eventually(within: 30) { scrape().flatMap { $0.contains(ready) && $0.contains("name=\"api\"") ? $0 : nil } })

        let checked = try runProcess(promtool, ["check", "metrics"], input: text)
        #expect(checked.status == 0 && checked.output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty,
                "promtool check metrics: \(checked.output)")

        let secret = try client.get(.secrets, namespace: "app1", name: "web", as: Secret.self)
        let notAfter = try CertgateCryptoBridge.notAfter(secret.bytes("tls.crt")!)
        #expect(text.contains(#"certgate_certificate_expiration_timestamp_seconds{namespace="app1",name="web",issuer="default"} \#(notAfter)"#),
                "the expiry of the certificate in the Secret")
        #expect(text.contains(#"certgate_certificate_renewal_timestamp_seconds{namespace="app1",name="web",issuer="default"} "#))
        #expect(text.contains(#"certgate_certificate_ready_status{namespace="app1",name="web",issuer="default",condition="False"} 0"#))
        #expect(text.contains(#"certgate_issuer_expiration_timestamp_seconds{issuer="default"} "#))

        try client.delete(.pkis, namespace: "app1", name: "web")
        #expect(eventually(within: 30) { scrape().flatMap { !$0.contains("name=\"web\"") && $0.contains("name=\"api\"") ? true : nil } } == true,
                "a deleted Pki's series go, the others stay")
    }

    /// A real Prometheus (Debian's) scrapes certgate on loopback, and its HTTP API answers
    /// with the expiry of the certificate a Pki got.
    @Test func prometheusScrapesItAndAnswersWithAPkisExpiry() throws {
        let prometheus = try which("prometheus")
        let running = try ServeWithPkis(["web"])
        defer { running.stop() }
        let directory = TemporaryDirectory()
        let port = freePort()
        try """
            global: {scrape_interval: 1s, scrape_timeout: 1s}
            scrape_configs:
              - job_name: certgate
                static_configs: [{targets: ["127.0.0.1:\(running.metricsPort)"]}]
            """.write(toFile: directory.file("prometheus.yml"), atomically: true, encoding: .utf8)
        let server = Process()
        server.executableURL = URL(fileURLWithPath: prometheus)
        server.arguments = ["--config.file", directory.file("prometheus.yml"), "--storage.tsdb.path", directory.file("data"),
                            "--web.listen-address", "127.0.0.1:\(port)"]
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        defer {
            server.terminate()
            server.waitUntilExit()
        }
        let query = #"certgate_certificate_expiration_timestamp_seconds{namespace="app1",name="web"}"#
        let answer = eventually(within: 60) { () -> [String: Any]? in
            guard let result = try? runProcess("curl", ["-sS", "--max-time", "2", "--get", "--data-urlencode", "query=\(query)",
                                                        "http://127.0.0.1:\(port)/api/v1/query"]),
                  let body = try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any],
                  let data = body["data"] as? [String: Any], let series = data["result"] as? [[String: Any]], let first = series.first else { return nil }
            return first
        }
        let sample = try #require(answer, "Prometheus answered the query")
        let labels = sample["metric"] as? [String: String]
        #expect(labels?["issuer"] == "default" && labels?["job"] == "certgate", "\(sample)")
        let value = (sample["value"] as? [Any])?.last as? String
        let secret = try running.client.get(.secrets, namespace: "app1", name: "web", as: Secret.self)
        #expect(value.flatMap(Double.init).map(Int.init) == (try CertgateCryptoBridge.notAfter(secret.bytes("tls.crt")!)), "\(sample)")
    }
}

/// `certgate serve` reconciling Pkis of these names in app1 against a test API server, with
/// its metrics on a loopback port.
struct ServeWithPkis {
    let api: TestAPIServer
    let client: KubeClient
    let server: Process
    let metricsPort: UInt16
    let directory = TemporaryDirectory()

    init(_ names: [String]) throws {
        api = try TestAPIServer()
        try api.writeKubeconfig(to: directory.file("kubeconfig"))
        client = try KubeClient(configuration: api.clusterConfiguration())
        for name in names {
            _ = try client.create(.pkis, namespace: "app1", Pki(metadata: ObjectMeta(name: name, namespace: "app1"),
                                                                spec: PkiSpec(serviceName: "app1", dnsNames: ["\(name).app1.svc"])))
        }
        metricsPort = freePort()
        server = try startCertgate(["serve", "--address", "127.0.0.1", "--port", String(freePort()),
                                    "--metrics-address", "127.0.0.1:\(metricsPort)",
                                    "--tls-cert-file", api.pki.certificateFile, "--tls-key-file", api.pki.keyFile,
                                    "--kubeconfig", directory.file("kubeconfig"), "--bootstrap-ca", "--leader-elect=false"]).process
    }

    func stop() {
        if server.isRunning {
            kill(server.processIdentifier, SIGTERM)
            server.waitUntilExit()
        }
        api.stop()
    }
}

/// The notAfter of a PEM certificate as `openssl x509 -enddate` says it, in seconds since 1970.
enum CertgateCryptoBridge {
    static func notAfter(_ pem: [UInt8]) throws -> Int {
        let result = try runProcess("openssl", ["x509", "-noout", "-enddate", "-dateopt", "iso_8601"], input: String(decoding: pem, as: UTF8.self))
        // notAfter=2027-03-05 17:12:03Z
        let text = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "notAfter=", with: "")
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withFullDate, .withSpaceBetweenDateAndTime, .withTime, .withColonSeparatorInTime]
        formatter.timeZone = TimeZone(identifier: "UTC")
        guard let date = formatter.date(from: String(text.dropLast(text.hasSuffix("Z") ? 1 : 0))) else {
            throw CocoaError(.formatting, userInfo: [NSDebugDescriptionErrorKey: "openssl said \(result.output)"])
        }
        return Int(date.timeIntervalSince1970)
    }
}
