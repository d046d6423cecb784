import CertgateLocking
import CertgateMetrics
import CertgateSystem
import Logging
import Synchronization

/// What every loop of one server reads while serving: its configuration, router, metrics
/// and logger, the count of open connections and whether it is stopping. The server and
/// each of its loops hold it; it holds neither, so the loops reach it without a cycle or an
/// unowned reference.
final class ServerCore: Sendable {
    let configuration: HTTPServerConfiguration
    let router: Router
    let logger: Logger
    let metrics: ResolvedServerMetrics
    let timeouts: TimeoutNanos
    private let connectionCount = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)
    /// Broadcast when a connection closes during shutdown, which waits for the last one.
    let connectionsClosed = ConditionVariable()

    init(configuration: HTTPServerConfiguration, router: Router, metrics: ResolvedServerMetrics, logger: Logger) {
        self.configuration = configuration
        self.router = router
        self.logger = logger
        self.metrics = metrics
        timeouts = TimeoutNanos(configuration.timeouts)
    }

    var openConnections: Int { connectionCount.load(ordering: .relaxed) }

    var isShuttingDown: Bool { stopping.load(ordering: .relaxed) }

    /// Marks the server stopping; false when it already was.
    func beginStopping() -> Bool {
        !stopping.exchange(true, ordering: .acquiringAndReleasing)
    }

    /// Takes a connection slot, or returns false at the limit.
    func reserveConnection() -> Bool {
        if connectionCount.wrappingAdd(1, ordering: .relaxed).newValue > configuration.maxConnections {
            connectionCount.wrappingSubtract(1, ordering: .relaxed)
            return false
        }
        metrics.openConnections.add(1)
        return true
    }

    func releaseConnection() {
        connectionCount.wrappingSubtract(1, ordering: .relaxed)
        metrics.openConnections.add(-1)
        if stopping.load(ordering: .acquiring) { connectionsClosed.broadcast() }
    }

    /// Runs the router and counts the answer on the loop that serves it.
    func respond(to request: HTTPRequest, startedAt start: UInt64, on context: LoopContext) -> HTTPResponse {
        let response = router.respond(to: request)
        context.record(path: router.metricsPath(for: request.path), status: response.status, startedAt: start)
        return response
    }
}
