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
    enum Phase { case handshaking, open, lingering, closed }

    let descriptor: Int32
    unowned let context: LoopContext
    let peer: SocketAddress?
    private(set) var phase: Phase
    private var tls: TLSSession?
    private var handler: ProtocolHandler?

    private var output: [UInt8] = []
    private var outputOffset = 0
    /// Close (after a lingering read) once the queue drains.
    private var closeWhenDrained = false
    /// Whether the peer may still be sending when we close (see ``close(afterDrain:linger:)``).
    private var lingerOnClose = true
    private var peerHasClosed = false
    private var readPaused = false
    /// OpenSSL asked for the opposite direction to finish a read, a write or the handshake.
    private var readWaitsForWritable = false
    private var writeWaitsForReadable = false
    private var handshakeWaitsForWritable = false
    private var interest: Interest = .readable
    /// Deadline for the handshake, for queued output to move, or for lingering.
    private var deadline: UInt64 = .max

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
            phase = .handshaking
            deadline = now + context.server.timeouts.handshake
        } else {
            phase = .open
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

    // MARK: Events

    func handle(_ readiness: Readiness) {
        switch phase {
        case .handshaking:
            if sendCollectedTLSOutput() { continueHandshake() }
        case .open:
            if readiness.isWritable || (writeWaitsForReadable && readiness.isReadable) {
                flush()
            }
            if phase == .open, readiness.isReadable || (readWaitsForWritable && readiness.isWritable) {
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
        switch phase {
        case .handshaking:
            if now >= deadline {
                context.server.metrics.handshakeFailures.increment()
                context.server.logger.debug("TLS handshake timed out", metadata: ["peer": "\(peerDescription)"])
                close()
            }
        case .lingering:
            if now >= deadline { close() }
        case .open:
            if hasQueuedOutput && now >= deadline {
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
        switch phase {
        case .handshaking: close()
        case .open: handler?.beginShutdown(); updateInterest()
        case .lingering, .closed: break
        }
    }

    // MARK: TLS handshake

    private func continueHandshake() {
        guard let tls else { return }
        do {
            switch try tls.handshake() {
            case .done:
                phase = .open
                deadline = .max
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
            case .wantRead:
                handshakeWaitsForWritable = false
                sendCollectedTLSOutput()
            case .wantWrite:
                handshakeWaitsForWritable = true
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
        while phase == .open && !readPaused && !peerHasClosed {
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
                        readWaitsForWritable = false
                        count = -1
                    case .wantWrite:
                        readWaitsForWritable = true
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
                peerHasClosed = true
                handler?.peerClosed()
                break
            }
            handler?.received(UnsafeRawBufferPointer(rebasing: scratch[0..<count]))
            if output.count - outputOffset > Connection.maxQueuedOutput {
                flush()
                if output.count - outputOffset > Connection.maxQueuedOutput { readPaused = true }
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
        guard phase == .open else { return }
        flush()
        updateInterest()
    }

    /// Continues reading after a pause (output drained, or a bounded read pass ended).
    func resumeReading() {
        guard phase == .open else { return }
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
        guard phase == .open else { return }
        writeWaitsForReadable = false
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
                            writeWaitsForReadable = true
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
                deadline = monotonicNanoseconds() + context.server.timeouts.write
            case .wouldBlock:
                waitForWritable()
                return
            }
        }
        output.removeAll(keepingCapacity: output.capacity <= 256 * 1024)
        outputOffset = 0
        // Closing after this answer: close_notify leaves in the same write.
        if closeWhenDrained { tls?.close() }
        guard sendCollectedTLSOutput() else {
            waitForWritable()
            return
        }
        deadline = .max
        if closeWhenDrained {
            startLingering()
            return
        }
        if readPaused {
            readPaused = false
            context.resumeReadingSoon(self)
        }
        handler?.outputDrained()
        if hasQueuedOutput { flush() }
    }

    /// Output waits for the socket: the write deadline runs from the first wait.
    private func waitForWritable() {
        guard phase == .open else { return }
        if deadline == .max { deadline = monotonicNanoseconds() + context.server.timeouts.write }
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
        guard afterDrain, phase == .open else { close(); return }
        closeWhenDrained = true
        lingerOnClose = linger
        if !hasQueuedOutput { startLingering() }
    }

    private func startLingering() {
        // A peer that has closed its side reads nothing more: no close_notify, no FIN first.
        if peerHasClosed {
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
        if !lingerOnClose {
            switch try? SocketIO.read(descriptor, into: context.loop.scratch) {
            case .wouldBlock?, .done(0)?:
                close()
                return
            default:
                break
            }
        }
        SocketIO.shutdownWrite(descriptor)
        phase = .lingering
        deadline = monotonicNanoseconds() + context.server.timeouts.linger
        updateInterest()
    }

    /// Closes at once.
    func close() {
        guard phase != .closed else { return }
        if phase == .open, !closeWhenDrained, !hasQueuedOutput { tls?.close() }
        // What TLS still holds (close_notify, an alert) goes if the socket takes it now.
        if let tls { _ = try? writeCollectedTLSOutput(tls) }
        phase = .closed
        handler = nil
        // The loop's table holds this connection, its TLS session and buffers until told:
        // closing the descriptor alone takes it out of the epoll set but not out of the table.
        context.loop.deregister(descriptor)
        SocketIO.close(descriptor)
        context.remove(self)
    }

    private func updateInterest() {
        var wanted: Interest = []
        switch phase {
        case .handshaking:
            wanted = handshakeWaitsForWritable || hasCollectedTLSOutput ? .writable : .readable
        case .open:
            if (!readPaused && !peerHasClosed) || writeWaitsForReadable { wanted.insert(.readable) }
            if (hasQueuedOutput && !writeWaitsForReadable) || readWaitsForWritable { wanted.insert(.writable) }
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
