import CertgateSystem
import CertgateLocking
import CertgateMetrics
import CertgateNet
import CertgateTLS
import Dispatch
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A server that owns its listeners and spreads their connections over an event-loop group.
public final class HTTPServer: Sendable {
    let configuration: HTTPServerConfiguration
    let router: Router
    let logger: Logger
    let metrics: ResolvedServerMetrics
    let timeouts: TimeoutNanos
    private let group: EventLoopGroup
    private let contexts: [LoopContext]
    private let listeners = Locked<[ListeningSocket]>([])
    private let connectionCount = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)
    /// Broadcast when a connection closes during shutdown, which waits for the last one.
    private let connectionsClosed = ConditionVariable()
    private let started = Atomic<Bool>(false)

    public init(configuration: HTTPServerConfiguration, router: Router, group: EventLoopGroup,
                metrics: ServerMetrics, logger: Logger) {
        self.configuration = configuration
        self.router = router
        self.group = group
        self.logger = logger
        self.metrics = ResolvedServerMetrics(metrics, server: configuration.name)
        self.timeouts = TimeoutNanos(configuration.timeouts)
        contexts = group.loops.map { LoopContext(loop: $0) }
        for context in contexts { context.server = self }
    }

    /// The loops reach the server through unowned(unsafe) references: a started server
    /// released before ``shutdown(gracePeriod:)`` would leave them pointing at freed memory.
    deinit {
        assert(!started.load(ordering: .relaxed) || stopping.load(ordering: .relaxed),
               "HTTPServer \(configuration.name) released while serving: call shutdown(gracePeriod:) first")
    }

    /// Binds every address and starts accepting. Returns the bound addresses (real ports).
    @discardableResult
    public func start() throws -> [SocketAddress] {
        var bound: [ListeningSocket] = []
        do {
            for address in configuration.addresses {
                bound.append(try ListeningSocket(address: address))
            }
        } catch {
            for socket in bound { socket.close() }
            throw error
        }
        listeners.withLock { $0 = bound }
        started.store(true, ordering: .relaxed)
        for context in contexts {
            let sockets = UncheckedBox(bound)
            context.loop.execute { [context] in
                for socket in sockets.value {
                    let acceptor = Acceptor(socket: socket, context: context)
                    context.acceptors.append(acceptor)
                    do {
                        try context.loop.register(socket.descriptor, interest: .acceptable, handler: acceptor)
                    } catch {
                        context.server.logger.error("cannot watch listener", metadata: ["address": "\(socket.address)", "error": "\(error)"])
                    }
                }
                context.startTicking()
            }
        }
        logger.info("listening", metadata: [
            "server": "\(configuration.name)", "addresses": "\(bound.map(\.address.description).joined(separator: ","))",
            "tls": "\(configuration.tls != nil)",
        ])
        return bound.map(\.address)
    }

    /// Serves an already connected stream socket without TLS, speaking `protocol`, on the
    /// first loop; takes ownership of `descriptor`. Listeners never offer HTTP/2 without TLS:
    /// this is for the fuzz targets, for which a handshake per input would cost more than
    /// the input, and which must still drive the connection code the listeners use.
    package func serveCleartext(descriptor: Int32, speaking protocol: CleartextProtocol) {
        guard reserveConnection() else {
            SocketIO.close(descriptor)
            return
        }
        let context = contexts[0]
        context.loop.execute { [context] in
            context.serve(descriptor: descriptor, peer: nil, tls: nil, cleartext: `protocol`)
        }
    }

    /// Connections open right now.
    public var openConnections: Int { connectionCount.load(ordering: .relaxed) }

    /// True once ``shutdown(gracePeriod:)`` has begun.
    public var isShuttingDown: Bool { stopping.load(ordering: .relaxed) }

    /// Stops accepting, lets requests in flight finish for up to `gracePeriod` seconds, then
    /// closes whatever is still open. Blocks until done. The event loops keep running.
    public func shutdown(gracePeriod: Double) {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let sockets = listeners.withLock { $0 }
        onEveryLoop { context in
            // A paused acceptor's tick would otherwise watch the closed listener again.
            for acceptor in context.acceptors { acceptor.stop() }
            context.acceptors = []
            context.beginShutdown()
        }
        for socket in sockets { socket.close() }
        logger.info("shutting down", metadata: ["server": "\(configuration.name)", "open_connections": "\(openConnections)"])

        // Woken by every connection that closes from here on (releaseConnection).
        let deadline = monotonicNanoseconds() + UInt64(max(0, gracePeriod) * 1e9)
        while true {
            let generation = connectionsClosed.generation
            let now = monotonicNanoseconds()
            guard openConnections > 0, now < deadline else { break }
            connectionsClosed.wait(unlessChangedSince: generation, seconds: Double(deadline - now) / 1e9)
        }
        if openConnections > 0 {
            logger.warning("grace period over; closing connections", metadata: ["server": "\(configuration.name)", "open_connections": "\(openConnections)"])
        }
        onEveryLoop { context in
            context.closeAll()
            context.stopTicking()
        }
    }

    /// Runs `body` on every loop and waits for all of them.
    private func onEveryLoop(_ body: @escaping @Sendable (LoopContext) -> Void) {
        let done = DispatchGroup()
        for context in contexts {
            done.enter()
            context.loop.execute { [context] in
                body(context)
                done.leave()
            }
        }
        done.wait()
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
