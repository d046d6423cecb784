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
        let server = context.server
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
    private func pauseAccepting(_ server: ServerCore, _ error: SystemError) {
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
