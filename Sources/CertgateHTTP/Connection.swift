import CertgateSystem
import CertgateJSON
import CertgateNet
import CertgateTLS
import Logging

/// What a connection speaks once its transport is up (HTTP/1.1 or HTTP/2).
protocol ProtocolHandler: AnyObject {
    /// Bytes arrived (already decrypted). May queue output on the connection.
    func received(_ bytes: UnsafeRawBufferPointer)
    /// The peer closed its sending side.
    func peerClosed()
    /// Everything queued has reached the socket.
    func outputDrained()
    /// Called on every loop tick, to enforce timeouts.
    func tick(now: UInt64)
    /// The server is stopping: finish what is in flight, accept nothing new.
    func beginShutdown()
}

/// What a connection without TLS speaks (with TLS, ALPN chooses).
package enum CleartextProtocol: Sendable {
    case http1
    /// HTTP/2 with prior knowledge: the client starts with the connection preface.
    case http2
}

/// One accepted TCP connection, with or without TLS, owned by one event loop.
///
/// Reads are processed as they come and answers are queued and written in one batch after
/// each read. When the peer does not read its answers, reading stops until the queue drains,
/// so a client cannot make the server buffer without bound.
final class Connection: EventHandler {
    /// Where the connection is, with what each stage needs and nothing the others do.
    enum State {
        /// The TLS handshake, until `deadline`. OpenSSL may ask to write before it reads on.
        case handshaking(deadline: UInt64, waitsForWritable: Bool)
        /// Serving requests.
        case open(Open)
        /// Answered and our side shut: what the peer still sends is read and dropped until it
        /// closes or `deadline` passes, so that our close is not a reset.
        case lingering(deadline: UInt64)
        case closed
    }

    /// How a connection closes once its last answer is written.
    enum DrainedClose {
        /// The peer may still be sending (a body not read, pipelined requests): read and drop
        /// what comes for a while, or our close would be a reset.
        case lingerFirst
        /// The whole request was read: close at once unless something unread is found.
        case atOnce
    }

    /// What an open connection tracks.
    struct Open {
        /// Queued output passed ``Connection/maxQueuedOutput``: no reading until it drains.
        var readPaused = false
        /// The peer's FIN arrived; nothing more will be read.
        var peerHasClosed = false
        /// OpenSSL asked for the opposite direction to finish a read or a write.
        var readWaitsForWritable = false
        var writeWaitsForReadable = false
        /// Set by ``Connection/close(afterDrain:linger:)``: close once the queue drains.
        var closeAfterDrain: DrainedClose?
        /// Queued output must move by then; .max while nothing waits for the socket.
        var writeDeadline: UInt64 = .max
    }

    let descriptor: Int32
    unowned let context: LoopContext
    let peer: SocketAddress?
    private(set) var state: State
    private var tls: TLSSession?
    private var handler: ProtocolHandler?

    private var output: [UInt8] = []
    private var outputOffset = 0
    private var interest: Interest = .readable

    /// Past this many queued bytes the connection stops reading until its peer catches up.
    static let maxQueuedOutput = 1 << 20

    /// `cleartext` is what a connection without TLS speaks: HTTP/1.1 for every listener;
    /// HTTP/2 only for ``HTTPServer/serveCleartext(descriptor:speaking:)``.
    init(descriptor: Int32, peer: SocketAddress?, tls: TLSSession?, context: LoopContext,
         cleartext: CleartextProtocol = .http1) {
        self.descriptor = descriptor
        self.peer = peer
        self.tls = tls
        self.context = context
        let now = monotonicNanoseconds()
        if tls != nil {
            state = .handshaking(deadline: now + context.server.timeouts.handshake, waitsForWritable: false)
        } else {
            state = .open(Open())
        }
        if tls == nil {
            switch cleartext {
            case .http1: handler = HTTP1Handler(connection: self, now: now)
            case .http2: handler = HTTP2Handler(connection: self, now: now)
            }
        }
    }

    /// Answers not yet written, or encrypted bytes TLS collected and the socket has not taken.
    var hasQueuedOutput: Bool { outputOffset < output.count || hasCollectedTLSOutput }

    private var hasCollectedTLSOutput: Bool { (tls?.collectedOutputCount ?? 0) > 0 }

    /// Past this many encrypted bytes waiting for the socket, no more answers are encrypted.
    static let maxCollectedTLSOutput = 64 * 1024

    var peerDescription: String { peer.map { "\($0)" } ?? "unknown" }

    private var isOpen: Bool {
        if case .open = state { return true }
        return false
    }

    /// The open state, read and changed in place; only while open.
    private var opened: Open {
        get {
            guard case .open(let open) = state else { preconditionFailure("connection state \(state) is not open") }
            return open
        }
        set {
            guard case .open = state else { preconditionFailure("connection state \(state) is not open") }
            state = .open(newValue)
        }
    }

    // MARK: Events

    func handle(_ readiness: Readiness) {
        switch state {
        case .handshaking:
            if sendCollectedTLSOutput() { continueHandshake() }
        case .open(let open):
            if readiness.isWritable || (open.writeWaitsForReadable && readiness.isReadable) {
                flush()
            }
            if case .open(let open) = state, readiness.isReadable || (open.readWaitsForWritable && readiness.isWritable) {
                readAvailable()
            }
        case .lingering:
            discardUntilClosed()
        case .closed:
            return
        }
        updateInterest()
    }

    func tick(now: UInt64) {
        switch state {
        case .handshaking(let deadline, _):
            if now >= deadline {
                context.server.metrics.handshakeFailures.increment()
                context.server.logger.debug("TLS handshake timed out", metadata: ["peer": "\(peerDescription)"])
                close()
            }
        case .lingering(let deadline):
            if now >= deadline { close() }
        case .open(let open):
            if hasQueuedOutput && now >= open.writeDeadline {
                context.server.logger.debug("closing a connection whose peer stopped reading", metadata: ["peer": "\(peerDescription)"])
                close()
                return
            }
            handler?.tick(now: now)
            updateInterest()
        case .closed:
            return
        }
    }

    func beginShutdown() {
        switch state {
        case .handshaking: close()
        case .open: handler?.beginShutdown(); updateInterest()
        case .lingering, .closed: break
        }
    }

    // MARK: TLS handshake

    private func continueHandshake() {
        guard let tls else { return }
        do {
            let result = try tls.handshake()
            switch result {
            case .done:
                state = .open(Open())
                context.recordHandshake(version: tls.protocolVersion)
                let now = monotonicNanoseconds()
                if tls.negotiatedProtocol == "h2" {
                    handler = HTTP2Handler(connection: self, now: now)
                } else {
                    handler = HTTP1Handler(connection: self, now: now)
                }
                // The client's first request may have arrived with its Finished message and sit
                // decrypted inside OpenSSL already, where epoll cannot see it.
                readAvailable()
            case .wantRead, .wantWrite:
                if case .handshaking(let deadline, _) = state {
                    state = .handshaking(deadline: deadline, waitsForWritable: result == .wantWrite)
                }
                sendCollectedTLSOutput()
            case .closed:
                context.server.metrics.handshakeFailures.increment()
                close()
            }
        } catch {
            context.server.metrics.handshakeFailures.increment()
            context.server.logger.debug("TLS handshake failed", metadata: ["peer": "\(peerDescription)", "error": "\(error)"])
            close()
        }
    }

    // MARK: Reading

    /// Reads until the socket (and OpenSSL's buffer) is empty, handing bytes to the protocol,
    /// then writes what the protocol queued in one batch.
    func readAvailable() {
        let scratch = context.loop.scratch
        var rounds = 0
        while case .open(let open) = state, !open.readPaused, !open.peerHasClosed {
            rounds += 1
            if rounds > 64 {
                // Let other connections on this loop run; come back for what OpenSSL may hold.
                context.resumeReadingSoon(self)
                break
            }
            let count: Int
            do {
                if let tls {
                    switch try tls.read(into: scratch) {
                    case .done(let n): count = n
                    case .closed: count = 0
                    case .wantRead:
                        opened.readWaitsForWritable = false
                        count = -1
                    case .wantWrite:
                        opened.readWaitsForWritable = true
                        count = -1
                    }
                } else {
                    switch try SocketIO.read(descriptor, into: scratch) {
                    case .done(let n): count = n
                    case .wouldBlock: count = -1
                    }
                }
            } catch {
                context.server.logger.debug("read failed", metadata: ["peer": "\(peerDescription)", "error": "\(error)"])
                close()
                return
            }
            if count < 0 { break }
            if count == 0 {
                opened.peerHasClosed = true
                handler?.peerClosed()
                break
            }
            handler?.received(UnsafeRawBufferPointer(rebasing: scratch[0..<count]))
            if output.count - outputOffset > Connection.maxQueuedOutput {
                flush()
                if isOpen, output.count - outputOffset > Connection.maxQueuedOutput { opened.readPaused = true }
            }
            // A short plain read means the socket is empty. Over TLS, what OpenSSL has not
            // buffered is still in the socket, and the level-triggered loop reports it: asking
            // again only to hear "would block" costs a system call per request.
            if let tls {
                if !tls.hasBufferedInput { break }
            } else if count < scratch.count {
                break
            }
        }
        flush()
    }

    /// Sends what was queued outside a read (a streamed response's next piece).
    func sendQueued() {
        guard isOpen else { return }
        flush()
        updateInterest()
    }

    /// Continues reading after a pause (output drained, or a bounded read pass ended).
    func resumeReading() {
        guard isOpen else { return }
        readAvailable()
        updateInterest()
    }

    /// After ``close(afterDrain:)``: read and drop what the peer still sends, so that closing
    /// with unread data does not reset the connection before the peer has read our answer.
    private func discardUntilClosed() {
        let scratch = context.loop.scratch
        for _ in 0..<16 {
            guard let result = try? SocketIO.read(descriptor, into: scratch) else { close(); return }
            switch result {
            case .done(0): close(); return
            case .done: continue
            case .wouldBlock: return
            }
        }
    }

    // MARK: Writing

    /// Queues bytes to send; they leave at the next flush (after the current read is processed).
    func enqueue(_ bytes: UnsafeRawBufferPointer) {
        output.append(contentsOf: bytes)
    }

    func enqueue(_ bytes: [UInt8]) {
        output.append(contentsOf: bytes)
    }

    func enqueue(_ text: String) {
        output.appendUTF8(text)
    }

    /// Queues what `write` appends, in one access to the output: a response head of a
    /// dozen pieces enqueued one by one paid a dynamic exclusivity check for each.
    func enqueue(_ write: (inout [UInt8]) -> Void) {
        write(&output)
    }

    /// Writes as much queued output as the socket takes.
    func flush() {
        guard isOpen else { return }
        opened.writeWaitsForReadable = false
        while outputOffset < output.count {
            // Encrypting runs ahead of the socket only so far.
            if let tls, tls.collectedOutputCount >= Connection.maxCollectedTLSOutput, !sendCollectedTLSOutput() {
                waitForWritable()
                return
            }
            let status: IOResult<Int>
            do {
                status = try output.withUnsafeBytes { bytes in
                    let pending = UnsafeRawBufferPointer(rebasing: bytes[outputOffset...])
                    if let tls {
                        switch try tls.write(from: pending) {
                        case .done(let n): return .done(n)
                        case .wantWrite: return .wouldBlock
                        case .wantRead:
                            opened.writeWaitsForReadable = true
                            return .wouldBlock
                        case .closed: return .done(0)
                        }
                    }
                    return try SocketIO.write(descriptor, from: pending)
                }
            } catch {
                context.server.logger.debug("write failed", metadata: ["peer": "\(peerDescription)", "error": "\(error)"])
                close()
                return
            }
            switch status {
            case .done(0):
                close()
                return
            case .done(let n):
                outputOffset += n
                opened.writeDeadline = monotonicNanoseconds() + context.server.timeouts.write
            case .wouldBlock:
                waitForWritable()
                return
            }
        }
        output.removeAll(keepingCapacity: output.capacity <= 256 * 1024)
        outputOffset = 0
        // Closing after this answer: close_notify leaves in the same write.
        if opened.closeAfterDrain != nil { tls?.close() }
        guard sendCollectedTLSOutput() else {
            waitForWritable()
            return
        }
        opened.writeDeadline = .max
        if opened.closeAfterDrain != nil {
            startLingering()
            return
        }
        if opened.readPaused {
            opened.readPaused = false
            context.resumeReadingSoon(self)
        }
        handler?.outputDrained()
        if hasQueuedOutput { flush() }
    }

    /// Output waits for the socket: the write deadline runs from the first wait.
    private func waitForWritable() {
        guard isOpen else { return }
        if opened.writeDeadline == .max { opened.writeDeadline = monotonicNanoseconds() + context.server.timeouts.write }
        updateInterest()
    }

    /// Writes what TLS collected (handshake flights, records, alerts) in as few writes as the
    /// socket allows. False when some must wait for the socket, or the write failed and the
    /// connection is closed.
    @discardableResult
    private func sendCollectedTLSOutput() -> Bool {
        guard let tls else { return true }
        do {
            return try writeCollectedTLSOutput(tls)
        } catch {
            context.server.logger.debug("write failed", metadata: ["peer": "\(peerDescription)", "error": "\(error)"])
            close()
            return false
        }
    }

    private func writeCollectedTLSOutput(_ tls: TLSSession) throws -> Bool {
        while tls.collectedOutputCount > 0 {
            var blocked = false
            try tls.sendCollectedOutput { bytes in
                switch try SocketIO.write(descriptor, from: bytes) {
                case .done(let count) where count > 0: return count
                case .done, .wouldBlock:
                    blocked = true
                    return 0
                }
            }
            if blocked { return false }
        }
        return true
    }

    // MARK: Closing

    /// Closes once the queued output is written. With `linger`, first a short lingering
    /// read: a peer that may still be sending (a body not read, pipelined requests) would
    /// otherwise get a reset that can destroy the answer before it reads it. Without (the
    /// whole request was read, as nginx decides), the close follows the answer at once,
    /// saving the half-close, the wait for the peer's FIN and its system calls.
    func close(afterDrain: Bool, linger: Bool = true) {
        guard afterDrain, isOpen else { close(); return }
        opened.closeAfterDrain = linger ? .lingerFirst : .atOnce
        if !hasQueuedOutput { startLingering() }
    }

    /// Once an open connection's last answer is written (``close(afterDrain:linger:)``).
    private func startLingering() {
        let open = opened
        // A peer that has closed its side reads nothing more: no close_notify, no FIN first.
        if open.peerHasClosed {
            close()
            return
        }
        tls?.close()
        // close_notify goes with whatever preceded it; if the socket is full it is dropped,
        // as a plain close would drop it.
        if let tls, (try? writeCollectedTLSOutput(tls)) == nil {
            close()
            return
        }
        // Nothing unread may be left in the socket when it closes, or the close is a reset:
        // one read makes sure, and anything found means the peer is still talking. Finding
        // its FIN instead (a client that closed after reading the answer, the usual end of a
        // connection per request) is as good as finding nothing.
        if open.closeAfterDrain == .atOnce {
            switch try? SocketIO.read(descriptor, into: context.loop.scratch) {
            case .wouldBlock?, .done(0)?:
                close()
                return
            default:
                break
            }
        }
        SocketIO.shutdownWrite(descriptor)
        state = .lingering(deadline: monotonicNanoseconds() + context.server.timeouts.linger)
        updateInterest()
    }

    /// Closes at once.
    func close() {
        switch state {
        case .closed: return
        case .open(let open) where open.closeAfterDrain == nil && !hasQueuedOutput: tls?.close()
        case .handshaking, .open, .lingering: break
        }
        // What TLS still holds (close_notify, an alert) goes if the socket takes it now.
        if let tls { _ = try? writeCollectedTLSOutput(tls) }
        state = .closed
        handler = nil
        // The loop's table holds this connection, its TLS session and buffers until told:
        // closing the descriptor alone takes it out of the epoll set but not out of the table.
        context.loop.deregister(descriptor)
        SocketIO.close(descriptor)
        context.remove(self)
    }

    private func updateInterest() {
        var wanted: Interest = []
        switch state {
        case .handshaking(_, let waitsForWritable):
            wanted = waitsForWritable || hasCollectedTLSOutput ? .writable : .readable
        case .open(let open):
            if (!open.readPaused && !open.peerHasClosed) || open.writeWaitsForReadable { wanted.insert(.readable) }
            if (hasQueuedOutput && !open.writeWaitsForReadable) || open.readWaitsForWritable { wanted.insert(.writable) }
        case .lingering:
            wanted = .readable
        case .closed:
            return
        }
        if wanted != interest {
            interest = wanted
            context.loop.setInterest(descriptor, wanted)
        }
    }
}
