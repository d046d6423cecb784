import CertgateHTTP
import CertgateMetrics
import CertgateNet
import CertgateTLS
import CertgateTestSupport
import Logging

/// The project's server on loopback, requiring client certificates from the test PKI's client CA.
final class MutualTLSServer {
    let group: EventLoopGroup
    let server: HTTPServer
    let port: UInt16

    init(pki: TestPKI) throws {
        let serving = ServingCertificate(files: ServingCertificateFiles(certificateFile: pki.certificateFile, keyFile: pki.keyFile,
                                                                        clientCAFile: pki.clientCAFile))
        if let error = serving.reload() { throw error }
        group = try EventLoopGroup(count: 1, namePrefix: "kube-test")
        var router = Router()
        router.addHealthRoutes(ReadinessChecks())
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        server = HTTPServer(configuration: HTTPServerConfiguration(name: "test", addresses: [try SocketAddress(host: "127.0.0.1", port: 0)], tls: serving),
                            router: router, group: group, metrics: ServerMetrics(registry: MetricsRegistry()), logger: logger)
        port = try server.start()[0].port
    }

    func stop() {
        server.shutdown(gracePeriod: 1)
        group.stopAndWait()
    }
}
