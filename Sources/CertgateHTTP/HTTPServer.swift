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

/// Time limits, in seconds, like Go's http.Server fields of the same meaning.
public struct HTTPTimeouts: Sendable {
    /// To finish the TLS handshake.
    public var handshake: Double = 10
    /// From the first byte of a request head to its end (cuts off slowloris clients).
    public var requestHeader: Double = 10
    /// From the end of a request head to the end of its body.
    public var requestBody: Double = 30
    /// A kept-alive connection with no request in progress is closed after this.
    public var idle: Double = 120
    /// Queued output that does not move for this long closes the connection.
    public var write: Double = 30
    /// How long a closing connection reads and drops what the peer still sends.
    public var linger: Double = 2

    public init() {}
}

/// HTTP/2 protections and sizes.
public struct HTTP2Settings: Sendable {
    /// SETTINGS_MAX_CONCURRENT_STREAMS announced to clients.
    public var maxConcurrentStreams: UInt32 = 100
    /// SETTINGS_INITIAL_WINDOW_SIZE for request bodies.
    public var initialWindowSize: UInt32 = 1 << 20
    /// Token bucket on RST_STREAM frames from a client (CVE-2023-44487, "rapid reset"): a
    /// client that resets more than `resetBurst` streams at once, or more than `resetRate`
    /// a second after that, gets GOAWAY and is closed.
    public var resetBurst: UInt64 = 1000
    public var resetRate: UInt64 = 33
    /// CONTINUATION frames allowed after one HEADERS frame (CVE-2024-28182).
    public var maxContinuations: Int = 8

    public init() {}
}

/// Everything that shapes one listening server.
public struct HTTPServerConfiguration: Sendable {
    /// A name for logs and the `server` label of metrics ("webhook", "metrics").
    public var name: String
    public var addresses: [SocketAddress]
    /// TLS from a hot-reloaded certificate; nil serves plain HTTP/1.1 (the metrics port).
    public var tls: ServingCertificate?
    public var limits = HTTPLimits()
    public var timeouts = HTTPTimeouts()
    public var http2 = HTTP2Settings()
    /// Connections past this are closed as soon as they are accepted.
    public var maxConnections = 4096

    public init(name: String, addresses: [SocketAddress], tls: ServingCertificate?) {
        self.name = name
        self.addresses = addresses
        self.tls = tls
    }
}

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

struct RequestMetricsKey: Hashable {
    let path: String
    let status: Int
}

/// Timeouts converted once to nanoseconds of the monotonic clock.
struct TimeoutNanos: Sendable {
    let handshake, requestHeader, requestBody, idle, write, linger: UInt64

    init(_ timeouts: HTTPTimeouts) {
        func nanos(_ seconds: Double) -> UInt64 { UInt64(max(0.001, seconds) * 1e9) }
        handshake = nanos(timeouts.handshake)
        requestHeader = nanos(timeouts.requestHeader)
        requestBody = nanos(timeouts.requestBody)
        idle = nanos(timeouts.idle)
        write = nanos(timeouts.write)
        linger = nanos(timeouts.linger)
    }
}

/// The server's metric children for its own `server` label, looked up once.
struct ResolvedServerMetrics: Sendable {
    let server: String
    let families: ServerMetrics
    let openConnections: Gauge.Child
    let inFlight: Gauge.Child
    let rejected: Counter.Child
    let handshakeFailures: Counter.Child
    let acceptPauses: Counter.Child

    init(_ families: ServerMetrics, server: String) {
        self.server = server
        self.families = families
        openConnections = families.openConnections.labels(server)
        inFlight = families.requestsInFlight.labels(server)
        rejected = families.rejectedConnections.labels(server)
        handshakeFailures = families.tlsHandshakeFailures.labels(server)
        acceptPauses = families.acceptPauses.labels(server)
    }

    func handshakes(version: String) -> Counter.Child { families.tlsHandshakes.labels(server, version) }
    func requests(path: String, code: String) -> Counter.Child { families.requests.labels(server, path, code) }
    func duration(path: String, code: String) -> Histogram.Child { families.requestDuration.labels(server, path, code) }
}

/// Hands a value that is not Sendable to the loop that owns it.
/// Safe only because the value is touched on that loop's thread alone.
struct UncheckedBox<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// A weak reference to a loop-owned object, for work queued to that loop that must not
/// keep it alive (a streamed response's wake-up after its connection closed).
struct WeakLoopBox<Value: AnyObject>: @unchecked Sendable {
    weak var value: Value?
    init(_ value: Value) { self.value = value }
}

/// A server's state on one event loop: the connections it owns and the cached Date header.
///
/// `@unchecked Sendable`: every property is used on `loop`'s thread only; other threads only
/// pass the context to `loop.execute`.
final class LoopContext: @unchecked Sendable {
    let loop: EventLoop
    unowned(unsafe) var server: HTTPServer!
    private var connections: [ObjectIdentifier: Connection] = [:]
    private(set) var dateHeader: String = httpDate()
    private var shuttingDown = false
    /// The acceptors of the server's listeners on this loop, until shutdown stops them.
    var acceptors: [Acceptor] = []
    /// The request counter and duration histogram of each path and status, looked up once
    /// per loop: finding them by label values hashes and locks on every request. Bounded
    /// by the router's paths (others count as "other") times the status codes it answers.
    private var requestMetrics: [RequestMetricsKey: (requests: Counter.Child, duration: Histogram.Child)] = [:]
    /// The handshake counter of each TLS version, likewise.
    private var handshakeCounters: [String: Counter.Child] = [:]

    init(loop: EventLoop) {
        self.loop = loop
    }

    var isShuttingDown: Bool { shuttingDown }

    /// Starts serving a connected socket whose slot ``HTTPServer/reserveConnection()`` took;
    /// gives the slot back and closes the socket if the loop cannot watch it.
    func serve(descriptor: Int32, peer: SocketAddress?, tls: TLSSession?, cleartext: CleartextProtocol = .http1) {
        let connection = Connection(descriptor: descriptor, peer: peer, tls: tls, context: self, cleartext: cleartext)
        do {
            try loop.register(descriptor, interest: .readable, handler: connection)
            connections[ObjectIdentifier(connection)] = connection
        } catch {
            turnAway(descriptor)
        }
    }

    /// Gives back the slot of a connection this loop accepted, and closes it.
    private func turnAway(_ descriptor: Int32) {
        server.releaseConnection()
        SocketIO.close(descriptor)
    }

    /// Makes the TLS session of a connection accepted for this loop and serves it; gives the
    /// slot back and closes the socket when no certificate has loaded yet.
    func adopt(descriptor: Int32, peer: SocketAddress?) {
        var session: TLSSession?
        if let tls = server.configuration.tls {
            guard let tlsContext = tls.context, let made = try? tlsContext.makeServerSession(descriptor: descriptor) else {
                // No certificate has loaded yet: nothing to handshake with.
                server.metrics.handshakeFailures.increment()
                turnAway(descriptor)
                return
            }
            session = made
        }
        serve(descriptor: descriptor, peer: peer, tls: session)
    }

    /// Counts one answered request.
    func record(path: String, status: Int, startedAt start: UInt64) {
        let key = RequestMetricsKey(path: path, status: status)
        let children: (requests: Counter.Child, duration: Histogram.Child)
        if let found = requestMetrics[key] {
            children = found
        } else {
            let code = String(status)
            children = (server.metrics.requests(path: path, code: code), server.metrics.duration(path: path, code: code))
            requestMetrics[key] = children
        }
        children.requests.increment()
        children.duration.observe(Double(monotonicNanoseconds() &- start) / 1e9)
    }

    /// Counts one completed TLS handshake.
    func recordHandshake(version: String) {
        if let counter = handshakeCounters[version] {
            counter.increment()
        } else {
            let counter = server.metrics.handshakes(version: version)
            handshakeCounters[version] = counter
            counter.increment()
        }
    }

    func remove(_ connection: Connection) {
        if connections.removeValue(forKey: ObjectIdentifier(connection)) != nil {
            server.releaseConnection()
        }
    }

    /// Reads again on the next loop pass (OpenSSL may hold bytes epoll cannot see).
    func resumeReadingSoon(_ connection: Connection) {
        let box = UncheckedBox(connection)
        loop.execute { box.value.resumeReading() }
    }

    func startTicking() {
        loop.addTickHandler(owner: self) { [unowned self] in
            let now = monotonicNanoseconds()
            dateHeader = httpDate()
            for connection in Array(connections.values) { connection.tick(now: now) }
        }
    }

    func stopTicking() {
        loop.removeTickHandler(owner: self)
    }

    func beginShutdown() {
        shuttingDown = true
        for connection in Array(connections.values) { connection.beginShutdown() }
    }

    func closeAll() {
        for connection in Array(connections.values) { connection.close() }
    }
}

/// Accepts connections from one listening socket on one loop.
final class Acceptor: EventHandler {
    let socket: ListeningSocket
    unowned let context: LoopContext
    /// Out of descriptors since this time (monotonic ns): the listener is not watched until
    /// ``descriptorBackoff`` has passed. nil while accepting.
    private var pausedSince: UInt64?
    /// When running out was last logged: once a minute at most, however often it recurs.
    private var lastLogged: UInt64?

    /// How long to stop accepting after EMFILE or ENFILE. The listener is level-triggered:
    /// watched on, it would wake the loop at once, again and again, at full CPU, while no
    /// descriptor can be had. SwiftNIO backs off its accepts the same way.
    static let descriptorBackoff: UInt64 = 500_000_000

    init(socket: ListeningSocket, context: LoopContext) {
        self.socket = socket
        self.context = context
    }

    func handle(_ readiness: Readiness) {
        let server = context.server!
        // A bounded batch, so one busy listener cannot starve this loop's connections.
        for _ in 0..<32 {
            let accepted: ConnectedSocket?
            do {
                accepted = try socket.accept()
            } catch let error as SystemError where error.errno == EMFILE || error.errno == ENFILE {
                pauseAccepting(server, error)
                return
            } catch {
                server.logger.debug("accept failed", metadata: ["error": "\(error)"])
                return
            }
            guard let accepted else { return }
            guard !context.isShuttingDown, server.reserveConnection() else {
                server.metrics.rejected.increment()
                SocketIO.close(accepted.descriptor)
                continue
            }
            context.adopt(descriptor: accepted.descriptor, peer: accepted.peer)
        }
    }

    /// Stops accepting for good: the listener is no longer watched, and a pause ends without
    /// watching it again. On the loop's thread, before the listener closes.
    func stop() {
        context.loop.deregister(socket.descriptor)
        context.loop.removeTickHandler(owner: self)
        pausedSince = nil
    }

    /// Stops watching the listener for ``descriptorBackoff`` (checked on the loop's ticks).
    /// The listener is deregistered, not modified: EPOLLEXCLUSIVE registrations cannot be.
    private func pauseAccepting(_ server: HTTPServer, _ error: SystemError) {
        let now = monotonicNanoseconds()
        if lastLogged.map({ now - $0 >= 60_000_000_000 }) ?? true {
            lastLogged = now
            server.logger.error("out of file descriptors; pausing accepts, retried every half second until some are free",
                                metadata: ["error": "\(error)", "server": "\(server.configuration.name)"])
        }
        server.metrics.acceptPauses.increment()
        guard pausedSince == nil else { return }
        pausedSince = now
        context.loop.deregister(socket.descriptor)
        // Held by the tick handler (strongly: the loop no longer holds it) until it resumes.
        context.loop.addTickHandler(owner: self) { [self] in
            guard let since = pausedSince, monotonicNanoseconds() - since >= Acceptor.descriptorBackoff else { return }
            pausedSince = nil
            context.loop.removeTickHandler(owner: self)
            do {
                try context.loop.register(socket.descriptor, interest: .acceptable, handler: self)
            } catch {
                server.logger.error("cannot watch the listener again", metadata: ["error": "\(error)"])
            }
        }
    }
}
