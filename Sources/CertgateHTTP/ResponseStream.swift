import CertgateLocking
import Synchronization

/// A response body written over time, from any thread (a watch stream).
///
/// A handler returns an ``HTTPResponse`` whose ``HTTPResponse/stream`` is set; the server
/// sends the head at once (chunked over HTTP/1.1, DATA frames over HTTP/2) and each piece
/// as soon as it is written, until ``finish()``. When the client goes away the stream is
/// cancelled and ``write(_:)`` returns false, so the producer can stop.
public final class ResponseStream: Sendable {
    private struct State {
        var pending: [[UInt8]] = []
        var finished = false
        var aborted = false
        var cancelled = false
        var wake: (@Sendable () -> Void)?
    }

    private let state = Locked(State())

    public init() {}

    /// Queues `bytes` for the client; false once the client has gone.
    @discardableResult
    public func write(_ bytes: [UInt8]) -> Bool {
        let wake = state.withLock { state -> (@Sendable () -> Void)?? in
            guard !state.cancelled, !state.finished else { return .none }
            state.pending.append(bytes)
            return .some(state.wake)
        }
        guard let wake else { return false }
        wake?()
        return true
    }

    /// Ends the body once what was written has been sent.
    public func finish() {
        let wake = state.withLock { state -> (@Sendable () -> Void)? in
            guard !state.finished else { return nil }
            state.finished = true
            return state.wake
        }
        wake?()
    }

    /// Closes the connection without ending the body, as a failing server or network would
    /// (for test servers); the client sees the response cut off.
    public func abort() {
        let wake = state.withLock { state -> (@Sendable () -> Void)? in
            guard !state.finished else { return nil }
            state.aborted = true
            state.finished = true
            return state.wake
        }
        wake?()
    }

    /// True once the client has gone or the server is shutting the connection.
    public var isCancelled: Bool { state.withLock { $0.cancelled } }

    // MARK: Server side

    /// Called on the connection's loop: `wake` runs whenever there is something to send.
    func attach(_ wake: @escaping @Sendable () -> Void) {
        let ready = state.withLock { state -> Bool in
            state.wake = wake
            return !state.pending.isEmpty || state.finished
        }
        if ready { wake() }
    }

    /// What to send now, whether the body ends after it, and whether it ends by cutting the
    /// connection (``abort()``).
    func take() -> (chunks: [[UInt8]], finished: Bool, aborted: Bool) {
        state.withLock { state in
            let chunks = state.pending
            state.pending.removeAll()
            return (chunks, state.finished, state.aborted)
        }
    }

    func cancel() {
        state.withLock { state in
            state.cancelled = true
            state.wake = nil
            state.pending.removeAll()
        }
    }
}
