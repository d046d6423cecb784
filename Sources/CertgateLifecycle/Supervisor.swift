import CertgateLocking
import Logging
import Synchronization

/// A part of the process that runs until told to stop: a server, a reconciler, a watcher.
public protocol Supervised: AnyObject, Sendable {
    /// How logs and errors name it.
    var supervisionName: String { get }
    /// Starts it; when this returns it runs. Throws when it cannot start.
    func start() throws
    /// Stops it and returns once nothing it started still runs (threads joined, sockets
    /// closed). Called once, only after a successful ``start()``.
    func stopAndJoin()
}

/// Components started in dependency order and stopped in reverse, each stopped and joined
/// before the ones it depends on: where `certgate serve` comes up, and the one place it goes
/// down (SIGTERM). A component that fails to start stops those started before it.
///
/// swift-service-lifecycle's ServiceGroup does this for async services; the control plane
/// runs on threads, so this is its thread-based counterpart.
///
/// How `serve` runs, and why two models and not one:
/// - the data plane (the webhook and metrics servers) runs on epoll event loops, one
///   thread per core (CertgateNet's `EventLoop`): thousands of connections, each request
///   a few microseconds of work that never blocks;
/// - the control plane (informers, reconcile workers, leader election, the Event sender,
///   the serving certificate's renewal, the file watchers) runs on `JoinableThread`s that
///   block on the Kubernetes client's requests and sleep on a `StopSignal`: a few dozen
///   long-lived loops whose work is waiting, which a thread states plainly and stops at
///   once, and which an event loop would have to turn inside out;
/// - Dispatch is left for the one thing it does that neither does: delivering SIGTERM and
///   SIGINT (`Signals.observe`) as an ordinary callback.
/// Swift concurrency (async/await) is not used: no part of the process needs to suspend
/// where a thread can block, and a cooperative pool of one thread per core would be
/// starved by the client's blocking I/O.
public final class Supervisor: Sendable {
    private let components: [any Supervised]
    private let started = Locked<[any Supervised]>([])
    private let logger: Logger

    public init(_ components: [any Supervised], logger: Logger) {
        self.components = components
        self.logger = logger
    }

    /// Starts every component in order. On a failure the ones already started are stopped
    /// (in reverse) and the error is thrown, naming the component.
    public func start() throws {
        for component in components {
            do {
                try component.start()
            } catch {
                logger.error("could not start; stopping what started", metadata: ["component": "\(component.supervisionName)", "error": "\(error)"])
                stop()
                throw SupervisionError(component: component.supervisionName, underlying: error)
            }
            started.withLock { $0.append(component) }
            logger.debug("started", metadata: ["component": "\(component.supervisionName)"])
        }
    }

    /// Stops and joins the started components, last first. Later calls do nothing.
    public func stop() {
        let running = started.withLock { started -> [any Supervised] in
            defer { started.removeAll() }
            return started
        }
        for component in running.reversed() {
            component.stopAndJoin()
            logger.debug("stopped", metadata: ["component": "\(component.supervisionName)"])
        }
    }
}

/// A component made of two closures, for parts whose start and stop are single calls.
public final class SupervisedCalls: Supervised {
    public let supervisionName: String
    private let starting: @Sendable () throws -> Void
    private let stopping: @Sendable () -> Void

    public init(_ name: String, start: @escaping @Sendable () throws -> Void, stop: @escaping @Sendable () -> Void) {
        supervisionName = name
        starting = start
        stopping = stop
    }

    public func start() throws { try starting() }
    public func stopAndJoin() { stopping() }
}

public struct SupervisionError: Error, CustomStringConvertible {
    public let component: String
    public let underlying: Error
    public var description: String { "starting \(component) failed: \(underlying)" }
}
