import CertgateCrypto
import CertgateTestSupport
import Foundation
import Testing

/// The built `certgate` executable, beside the test bundle in the build directory.
let certgateBinary: String = {
    let candidates = [
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("certgate").path,
        Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("certgate").path,
        "\(repositoryRoot)/.build/debug/certgate",
    ]
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates.last!
}()

@Suite struct CertsInitTests {
    @Test func writesAVerifiableDevelopmentPairWithPrivateKeys() throws {
        let directory = TemporaryDirectory()
        let dir = directory.file("certs")
        let result = try runProcess(certgateBinary, ["certs", "init", "--dir", dir])
        #expect(result.status == 0, "\(result.output)")

        for key in ["ca.key", "server.key"] {
            let mode = try FileManager.default.attributesOfItem(atPath: "\(dir)/\(key)")[.posixPermissions] as? Int
            #expect(mode == 0o600, "\(key) must be readable by its owner only")
        }
        let verify = try runProcess("openssl", ["verify", "-CAfile", "\(dir)/ca.crt", "\(dir)/server.crt"])
        #expect(verify.stdout.contains("server.crt: OK"), "\(verify.output)")
        let names = try runProcess("openssl", ["x509", "-in", "\(dir)/server.crt", "-noout", "-ext", "subjectAltName,extendedKeyUsage"]).stdout
        #expect(names.contains("DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1"), "\(names)")
        #expect(names.contains("TLS Web Server Authentication"))
        let key = try PrivateKey(pem: Array(try String(contentsOfFile: "\(dir)/server.key", encoding: .utf8).utf8))
        #expect(try Certificate(pem: Array(try String(contentsOfFile: "\(dir)/server.crt", encoding: .utf8).utf8)).matches(key))

        let again = try runProcess(certgateBinary, ["certs", "init", "--dir", dir])
        #expect(again.status != 0)
        #expect(again.stderr.contains("already exists; pass --force"), "\(again.output)")
        #expect(try runProcess(certgateBinary, ["certs", "init", "--dir", dir, "--force"]).status == 0)
    }
}

/// The chart's appVersion: the release the binary must say it is.
func chartAppVersion() throws -> String {
    let chart = try String(contentsOfFile: "\(repositoryRoot)/charts/certgate/Chart.yaml", encoding: .utf8)
    let line = chart.split(separator: "\n").first { $0.hasPrefix("appVersion:") } ?? ""
    return line.dropFirst("appVersion:".count).trimmingCharacters(in: CharacterSet(charactersIn: " \""))
}

@Suite struct VersionCommandTests {
    @Test func theBinarySaysTheReleaseTheChartInstalls() throws {
        let release = try chartAppVersion()
        #expect(!release.isEmpty)
        for arguments in [["--version"], ["version"]] {
            let result = try runProcess(certgateBinary, arguments)
            #expect(result.status == 0)
            #expect(result.stdout == "certgate \(release)\n", "\(arguments): \(result.output)")
        }
    }
}

@Suite struct ServeCommandTests {
    @Test func badFlagsAreRefusedWithTheFlagNamed() throws {
        let format = try runProcess(certgateBinary, ["serve", "--log-format", "xml"])
        #expect(format.status == 64)
        #expect(format.stderr.contains("The value 'xml' is invalid for '--log-format <log-format>'. Please provide one of 'text' and 'json'."),
                "\(format.output)")
        let address = try runProcess(certgateBinary, ["serve", "--address", "localhost"])
        #expect(address.stderr.contains("\"localhost\" is not a numeric IPv4 or IPv6 address"), "\(address.output)")
        let duration = try runProcess(certgateBinary, ["serve", "--idle-timeout", "5 minutes"])
        #expect(duration.stderr.contains("The value '5 minutes' is invalid for '--idle-timeout <duration>'"), "\(duration.output)")
        #expect(duration.stderr.contains("as a Go duration (500ms, 10s, 1m30s)"), "the help line says what a duration looks like: \(duration.output)")
        let qps = try runProcess(certgateBinary, ["serve", "--kube-api-qps", "0"])
        #expect(qps.status == 64)
        #expect(qps.stderr.contains("--kube-api-qps must be a number other than 0 (a negative value turns the client-side limit off)"),
                "\(qps.output)")
        // The namespace under its earlier spelling still parses: only the name is refused.
        let lease = try runProcess(certgateBinary, ["serve", "--leader-election-namespace", "certgate",
                                                    "--leader-elect-resource-name", "Certgate_Leader"])
        #expect(lease.status == 64)
        #expect(lease.stderr.contains("--leader-elect-resource-name: \"Certgate_Leader\" is not a valid object name"), "\(lease.output)")
    }

    @Test func waitsForItsCertificateThenServesAndStopsGracefullyOnSIGTERM() throws {
        let directory = TemporaryDirectory()
        let pki = try TestPKI(in: directory)
        let certificate = directory.file("later/tls.crt")
        let key = directory.file("later/tls.key")
        let (port, metricsPort) = (freePort(), freePort())
        let server = Process()
        server.executableURL = URL(fileURLWithPath: certgateBinary)
        server.arguments = ["serve", "--address", "127.0.0.1", "--port", String(port), "--metrics-address", "127.0.0.1:\(metricsPort)",
                            "--tls-cert-file", certificate, "--tls-key-file", key, "--certificate-check-interval", "200ms",
                            "--shutdown-grace-period", "10s", "--log-format", "json"]
        let log = Pipe()
        server.standardError = log
        server.standardOutput = FileHandle.nullDevice
        try server.run()
        defer { if server.isRunning { server.terminate() } }

        // No certificate yet: the metrics port says why the server is not ready.
        let notReady = try waitForHTTP("http://127.0.0.1:\(metricsPort)/readyz?verbose") { $0.hasSuffix("503") }
        #expect(notReady.contains("[-]serving-certificate failed: no serving certificate has loaded from \(certificate)"), "\(notReady)")

        try FileManager.default.createDirectory(atPath: directory.file("later"), withIntermediateDirectories: true)
        try pki.writeServingPair(certificateFile: certificate, keyFile: key)
        _ = try waitForHTTP("http://127.0.0.1:\(metricsPort)/readyz") { $0.hasSuffix("200") }
        let healthy = try runProcess("curl", ["-sS", "--max-time", "5", "--cacert", pki.caFile, "https://127.0.0.1:\(port)/healthz"])
        #expect(healthy.stdout == "ok\n", "\(healthy.output)")

        // A request whose body is still arriving when SIGTERM comes is answered, then the process exits 0.
        let box = Shared<[String: Any]?>(nil)
        let done = DispatchSemaphore(value: 0)
        let arguments = ["h1", "--port", String(port), "--ca", pki.caFile,
                         "send:GET /healthz HTTP/1.1\\r\\nHost: localhost\\r\\nContent-Length: 4\\r\\n\\r\\nab", "sleep:5", "send:cd", "recvclose"]
        Thread.detachNewThread {
            box.value = try? rawClient(arguments)
            done.signal()
        }
        // SIGTERM once the server holds the request: its head read, its body not yet. The body's
        // second half waits 5 s, so that a scrape sees the request in flight even when curl
        // takes seconds to start under CI's load (1.5 s was missed once).
        _ = try waitForHTTP("http://127.0.0.1:\(metricsPort)/metrics") {
            $0.contains("certgate_http_requests_in_flight{server=\"webhook\"} 1\n")
        }
        kill(server.processIdentifier, SIGTERM)
        #expect(done.wait(timeout: .now() + 20) == .success)
        let responses = box.value?["responses"] as? String ?? ""
        #expect(responses.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(String(describing: box.value))")
        #expect(responses.contains("Connection: close\r\n"))

        server.waitUntilExit()
        #expect(server.terminationStatus == 0)
        let lines = String(decoding: log.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(lines.contains("\"msg\":\"signal received; shutting down gracefully\""), "\(lines)")
        #expect(lines.contains("\"msg\":\"stopped\""))
        #expect(lines.contains("\"msg\":\"serving certificate loaded\""))
    }
}

/// Polls `url` with curl until `accept` likes "<body>\n<code>" or 20 seconds pass.
func waitForHTTP(_ url: String, accept: (String) -> Bool) throws -> String {
    let deadline = Date().addingTimeInterval(20)
    var last = ""
    while Date() < deadline {
        last = try runProcess("curl", ["-sS", "--max-time", "2", "-w", "\n%{http_code}", url]).stdout
        if accept(last) { return last }
        Thread.sleep(forTimeInterval: 0.1)
    }
    throw ClientFailure(output: last)
}

/// `certgate` started with `arguments` (stdout discarded), and a pipe with what it logs.
func startCertgate(_ arguments: [String], environment: [String: String]? = nil) throws -> (process: Process, log: Pipe) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: certgateBinary)
    process.arguments = arguments
    if let environment { process.environment = childEnvironment(environment) }
    let log = Pipe()
    process.standardError = log
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    return (process, log)
}

/// The first non-nil answer of `poll`, asked every 0.1 s for up to `seconds`.
func eventually<T>(within seconds: Double = 30, _ poll: () -> T?) -> T? {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if let value = poll() { return value }
        Thread.sleep(forTimeInterval: 0.1)
    }
    return poll()
}
