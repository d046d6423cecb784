import CertgateLocking
import CertgateHTTP
import CertgateMetrics
import CertgateNet
import CertgateTLS
import CertgateTestSupport
import Logging
import Synchronization

/// The project's server on loopback with the test PKI's serving certificate, optionally
/// requiring client certificates from its client CA.
final class LoopbackServer {
    let group: EventLoopGroup
    let server: HTTPServer
    let port: UInt16

    init(pki: TestPKI, requireClientCertificate: Bool = false, router: Router? = nil) throws {
        let serving = ServingCertificate(files: ServingCertificateFiles(certificateFile: pki.certificateFile, keyFile: pki.keyFile,
                                                                        clientCAFile: requireClientCertificate ? pki.clientCAFile : nil))
        if let error = serving.reload() { throw error }
        group = try EventLoopGroup(count: 1, namePrefix: "kube-test")
        var routes = router ?? Router()
        if router == nil { routes.addHealthRoutes(ReadinessChecks()) }
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        server = HTTPServer(configuration: HTTPServerConfiguration(name: "test", addresses: [try SocketAddress(host: "127.0.0.1", port: 0)], tls: serving),
                            router: routes, group: group, metrics: ServerMetrics(registry: MetricsRegistry()), logger: logger)
        port = try server.start()[0].port
    }

    func stop() {
        server.shutdown(gracePeriod: 1)
        group.stopAndWait()
    }
}

/// What the client sent, in order.
final class RequestLog: Sendable {
    private let entries = Locked<[HTTPRequest]>([])
    func record(_ request: HTTPRequest) { entries.withLock { $0.append(request) } }
    var all: [HTTPRequest] { entries.withLock { $0 } }
}
