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
    /// What the loops share while serving; each holds it, so none outlives it.
    private let core: ServerCore
    private let group: EventLoopGroup
    private let contexts: [LoopContext]
    private let listeners = Locked<[ListeningSocket]>([])
    private let started = Atomic<Bool>(false)

    public init(configuration: HTTPServerConfiguration, router: Router, group: EventLoopGroup,
                metrics: ServerMetrics, logger: Logger) {
        let core = ServerCore(configuration: configuration, router: router, metrics: ResolvedServerMetrics(metrics, server: configuration.name),
                              logger: logger)
        self.core = core
        self.group = group
        contexts = group.loops.map { LoopContext(loop: $0, server: core) }
    }

    private var configuration: HTTPServerConfiguration { core.configuration }
    private var logger: Logger { core.logger }

    /// A started server released before ``shutdown(gracePeriod:)`` would leave its loops
    /// serving its listeners with nobody able to stop them.
    deinit {
        assert(!started.load(ordering: .relaxed) || core.isShuttingDown,
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
        guard core.reserveConnection() else {
            SocketIO.close(descriptor)
            return
        }
        let context = contexts[0]
        context.loop.execute { [context] in
            context.serve(descriptor: descriptor, peer: nil, tls: nil, cleartext: `protocol`)
        }
    }

    /// Connections open right now.
    public var openConnections: Int { core.openConnections }

    /// True once ``shutdown(gracePeriod:)`` has begun.
    public var isShuttingDown: Bool { core.isShuttingDown }

    /// Stops accepting, lets requests in flight finish for up to `gracePeriod` seconds, then
    /// closes whatever is still open. Blocks until done. The event loops keep running.
    public func shutdown(gracePeriod: Double) {
        guard core.beginStopping() else { return }
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
            let generation = core.connectionsClosed.generation
            let now = monotonicNanoseconds()
            guard openConnections > 0, now < deadline else { break }
            core.connectionsClosed.wait(unlessChangedSince: generation, seconds: Double(deadline - now) / 1e9)
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
}
