import CertgateHTTP
import CertgateMetrics
import CertgateNet
import CertgateTLS
import CertgateTestSupport
import Foundation
import Logging

/// A real server on a loopback port with fresh certificates, for tests with real clients.
///
/// Routes: GET /healthz, GET /readyz, and POST /validate, which echoes the body and
/// returns the `timeout` query parameter in an `x-timeout` header.
final class TestServer: @unchecked Sendable {
    let directory = TemporaryDirectory()
    let pki: TestPKI
    let serving: ServingCertificate
    let registry = MetricsRegistry()
    let group: EventLoopGroup
    let server: HTTPServer
    let port: UInt16
    /// The port of each of the configuration's addresses, the first being `port`.
    let ports: [UInt16]
    let host: String
    private var stopped = false

    init(host: String = "127.0.0.1", requireClientCertificate: Bool = false, ticketKeys: SessionTicketKeys = SessionTicketKeys(),
         configure: (inout HTTPServerConfiguration) -> Void = { _ in },
         extraRoutes: (inout Router) -> Void = { _ in }) throws {
        pki = try TestPKI(in: directory)
        serving = ServingCertificate(files: ServingCertificateFiles(
            certificateFile: pki.certificateFile, keyFile: pki.keyFile,
            clientCAFile: requireClientCertificate ? pki.clientCAFile : nil), ticketKeys: ticketKeys)
        if let error = serving.reload() { throw error }
        group = try EventLoopGroup(count: 2, namePrefix: "test-loop")
        var router = Router()
        router.addHealthRoutes(ReadinessChecks())
        router.add("POST", "/validate") { request in
            var response = HTTPResponse.json(200, request.body)
            response.headers.add("x-timeout", request.queryValue("timeout") ?? "none")
            response.headers.add("x-protocol", request.version.description)
            return response
        }
        extraRoutes(&router)
        var configuration = HTTPServerConfiguration(name: "webhook", addresses: [try SocketAddress(host: host, port: 0)], tls: serving)
        configuration.timeouts.linger = 0.5
        configure(&configuration)
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        server = HTTPServer(configuration: configuration, router: router, group: group,
                            metrics: ServerMetrics(registry: registry), logger: logger)
        ports = try server.start().map(\.port)
        port = ports[0]
        self.host = host
    }

    func url(_ path: String) -> String {
        host.contains(":") ? "https://[\(host)]:\(port)\(path)" : "https://\(host):\(port)\(path)"
    }

    /// curl with the test CA, a time limit, and `-w` printing "<http_version> <code>" last.
    func curl(_ arguments: [String]) throws -> ProcessResult {
        try runProcess("curl", ["-sS", "--max-time", "10", "--cacert", pki.caFile, "-w", "\n%{http_version} %{http_code}"] + arguments, timeout: 30)
    }

    /// The rawclient.py arguments that reach this server.
    var clientArguments: [String] { ["--port", String(port), "--ca", pki.caFile] }

    /// True when a fresh connection still gets GET /healthz answered.
    func stillServes() throws -> Bool {
        try curl([url("/healthz")]).stdout.hasSuffix("ok\n\n2 200")
    }

    func stop() {
        guard !stopped else { return }
        stopped = true
        server.shutdown(gracePeriod: 1)
        group.stopAndWait()
    }

    deinit { stop() }
}
