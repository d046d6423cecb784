import CertgateLocking
import CertgateMetrics
import CertgateNet
import CertgateSystem
import CertgateTLS
import Dispatch
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

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
    let server: ServerCore
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

    init(loop: EventLoop, server: ServerCore) {
        self.loop = loop
        self.server = server
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
