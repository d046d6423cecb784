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
        let api = try TestAPIServer()
        defer { api.stop() }
        let directory = TemporaryDirectory()
        try api.writeKubeconfig(to: directory.file("kubeconfig"))
        let client = try KubeClient(configuration: api.clusterConfiguration())
        for name in ["web", "api"] {
            _ = try client.create(.pkis, namespace: "app1", Pki(metadata: ObjectMeta(name: name, namespace: "app1"),
                                                                spec: PkiSpec(serviceName: "app1", dnsNames: ["\(name).app1.svc"])))
        }
        let metricsPort = freePort()
        let (server, _) = try startCertgate(["serve", "--address", "127.0.0.1", "--port", String(freePort()),
                                             "--metrics-address", "127.0.0.1:\(metricsPort)",
                                             "--tls-cert-file", api.pki.certificateFile, "--tls-key-file", api.pki.keyFile,
                                             "--kubeconfig", directory.file("kubeconfig"), "--bootstrap-ca", "--leader-elect=false"])
        defer { if server.isRunning { server.terminate() } }
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
        kill(server.processIdentifier, SIGTERM)
        server.waitUntilExit()
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
