import CertgateHTTP
import CertgateMetrics
import CertgateNet
import Logging
import Testing

@Suite struct ServerLifetimeTests {
    /// The event loops hold unowned references to a started server; releasing it without
    /// `shutdown(gracePeriod:)` would leave them pointing at freed memory. Debug builds stop
    /// there with the reason instead of failing later somewhere else.
    @Test func aStartedServerReleasedWithoutShutdownStopsADebugBuild() async {
        #if DEBUG
        await #expect(processExitsWith: .failure) {
            let group = try EventLoopGroup(count: 1, namePrefix: "released")
            var logger = Logger(label: "test")
            logger.logLevel = .critical
            var server: HTTPServer? = HTTPServer(
                configuration: HTTPServerConfiguration(name: "released", addresses: [try SocketAddress(host: "127.0.0.1", port: 0)], tls: nil),
                router: Router(), group: group, metrics: ServerMetrics(registry: MetricsRegistry()), logger: logger)
            try server?.start()
            server = nil
        }
        #endif
    }

    @Test func aServerShutDownBeforeReleaseEndsCleanly() async {
        await #expect(processExitsWith: .success) {
            let group = try EventLoopGroup(count: 1, namePrefix: "released")
            var logger = Logger(label: "test")
            logger.logLevel = .critical
            var server: HTTPServer? = HTTPServer(
                configuration: HTTPServerConfiguration(name: "released", addresses: [try SocketAddress(host: "127.0.0.1", port: 0)], tls: nil),
                router: Router(), group: group, metrics: ServerMetrics(registry: MetricsRegistry()), logger: logger)
            try server?.start()
            server?.shutdown(gracePeriod: 0)
            server = nil
            group.stopAndWait()
        }
    }
}
