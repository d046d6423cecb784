import CertgateSystem
import CertgateJSON
import CertgateNet
#if canImport(Glibc)
import Glibc
#endif

/// HTTP/1.1 on one connection: keep-alive, pipelining, Content-Length and chunked bodies,
/// the header, body and idle timeouts, and the error answers the parser asks for.
final class HTTP1Handler: ProtocolHandler {
    private unowned let connection: Connection
    private var parser: HTTP1Parser
    private var head: HTTP1Parser.Head?
    /// When the current head (or body) began to arrive, for the timeouts and latency.
    private var headStarted: UInt64?
    private var bodyStarted: UInt64 = 0
    private var idleSince: UInt64
    private var closing = false
    /// A streamed response in progress: later pipelined requests wait for it to end.
    private var streaming: (stream: ResponseStream, chunked: Bool, keepAlive: Bool)?

    init(connection: Connection, now: UInt64) {
        self.connection = connection
        parser = HTTP1Parser(limits: connection.context.server.configuration.limits)
        idleSince = now
    }

    private var server: ServerCore { connection.context.server }

    deinit { streaming?.stream.cancel() }

    func received(_ bytes: UnsafeRawBufferPointer) {
        guard !closing else { return }
        if headStarted == nil && head == nil { headStarted = monotonicNanoseconds() }
        parser.append(bytes)
        processBufferedRequests()
    }

    private func processBufferedRequests() {
        while !closing && streaming == nil {
            let event: HTTP1Parser.Event?
            do {
                event = try parser.next()
            } catch {
                rejectAndClose(error)
                return
            }
            guard let event else { break }
            switch event {
            case .head(let parsed):
                head = parsed
                bodyStarted = monotonicNanoseconds()
                server.metrics.inFlight.add(1)
                if parsed.expectsContinue && parsed.framing != .length(0) {
                    connection.enqueue("HTTP/1.1 100 Continue\r\n\r\n")
                }
            case .body(let body):
                guard let current = head else { continue }
                head = nil
                let start = headStarted ?? bodyStarted
                headStarted = parser.isMidRequest ? monotonicNanoseconds() : nil
                let request = HTTPRequest(method: current.method, path: current.path, query: current.query,
                                          headers: current.headers, body: body, version: current.version)
                let response = server.respond(to: request, startedAt: start, on: connection.context)
                server.metrics.inFlight.add(-1)
                let keepAlive = current.keepAlive && !connection.context.isShuttingDown
                if let stream = response.stream, current.method != "HEAD" {
                    startStreaming(response, stream, version: current.version, keepAlive: keepAlive)
                    return
                }
                write(response, version: current.version, keepAlive: keepAlive, omitBody: current.method == "HEAD")
                if !keepAlive {
                    closing = true
                    // The request was read whole; linger only for bytes the client sent after it.
                    connection.close(afterDrain: true, linger: parser.isMidRequest)
                }
            }
        }
        idleSince = monotonicNanoseconds()
    }

    /// Sends the head now and the body as the stream is written: chunked over HTTP/1.1,
    /// delimited by closing the connection over HTTP/1.0.
    private func startStreaming(_ response: HTTPResponse, _ stream: ResponseStream, version: HTTPVersion, keepAlive: Bool) {
        let chunked = version == .http1_1
        var head = response
        head.body = []
        if chunked { head.headers.add("transfer-encoding", "chunked") }
        write(head, version: version, keepAlive: chunked && keepAlive, omitBody: true, omitLength: true)
        streaming = (stream, chunked, chunked && keepAlive)
        let handler = WeakLoopBox(self)
        let loop = connection.context.loop
        stream.attach { loop.execute { handler.value?.sendStreamed() } }
    }

    /// Moves what the stream has into the connection's queue (on the loop thread).
    private func sendStreamed() {
        guard let (stream, chunked, keepAlive) = streaming else { return }
        let (pieces, finished, aborted) = stream.take()
        if aborted {
            streaming = nil
            closing = true
            connection.close()
            return
        }
        for piece in pieces where !piece.isEmpty {
            if chunked { connection.enqueue(String(piece.count, radix: 16) + "\r\n") }
            connection.enqueue(piece)
            if chunked { connection.enqueue("\r\n") }
        }
        if finished {
            streaming = nil
            if chunked { connection.enqueue("0\r\n\r\n") }
            if keepAlive {
                idleSince = monotonicNanoseconds()
                processBufferedRequests()
            } else {
                closing = true
                connection.close(afterDrain: true)
            }
        }
        connection.sendQueued()
    }

    /// Answers a request the parser refused and closes: the stream cannot be trusted after it.
    private func rejectAndClose(_ error: HTTPParseError) {
        if head != nil { server.metrics.inFlight.add(-1) }
        connection.context.record(path: head.map { server.router.metricsPath(for: $0.path) } ?? "other", status: error.status,
                                  startedAt: headStarted ?? monotonicNanoseconds())
        head = nil
        write(.error(error.status, error.message), version: .http1_1, keepAlive: false, omitBody: false)
        closing = true
        connection.close(afterDrain: true)
    }

    func peerClosed() {
        // A request cut off half way cannot be answered; a complete one already was.
        if parser.isMidRequest || head != nil {
            if head != nil { server.metrics.inFlight.add(-1) }
            head = nil
            connection.close()
        } else {
            closing = true
            connection.close(afterDrain: true)
        }
    }

    func outputDrained() {}

    func tick(now: UInt64) {
        guard !closing, streaming == nil else { return }
        if head != nil {
            if now &- bodyStarted > server.timeouts.requestBody {
                rejectAndClose(HTTPParseError(status: 408, message: "the request body did not arrive in time"))
            }
        } else if let started = headStarted, parser.isMidRequest {
            if now &- started > server.timeouts.requestHeader {
                rejectAndClose(HTTPParseError(status: 408, message: "the request header did not arrive in time"))
            }
        } else if !connection.hasQueuedOutput && now &- idleSince > server.timeouts.idle {
            closing = true
            connection.close(afterDrain: true)
        }
    }

    func beginShutdown() {
        // A streamed response (a watch) ends now; its client reconnects elsewhere.
        if let (stream, _, _) = streaming {
            streaming = (stream, streaming!.chunked, false)
            stream.finish()
            return
        }
        // Idle connections close now; one with a request in progress answers it with
        // "Connection: close" (the loop context reports shutting down) and closes then.
        if head == nil && !parser.isMidRequest && !connection.hasQueuedOutput {
            closing = true
            connection.close(afterDrain: true)
        }
    }

    /// Writes the head straight into the connection's output: building it as one String
    /// first cost more than the rest of the write (each `+=` is a full String append).
    private func write(_ response: HTTPResponse, version: HTTPVersion, keepAlive: Bool, omitBody: Bool, omitLength: Bool = false) {
        let dateHeader = connection.context.dateHeader
        connection.enqueue { output in
            output.appendUTF8(version == .http1_0 ? "HTTP/1.0 " : "HTTP/1.1 ")
            output.appendUTF8(String(response.status))
            output.appendUTF8(" ")
            output.appendUTF8(reasonPhrase(response.status))
            output.appendUTF8("\r\n")
            for (name, value) in response.headers {
                output.appendUTF8(canonicalHeaderName(name))
                output.appendUTF8(": ")
                output.appendUTF8(value)
                output.appendUTF8("\r\n")
            }
            if !omitLength && response.status >= 200 && response.status != 204 && response.status != 304 {
                output.appendUTF8("Content-Length: ")
                output.appendUTF8(String(response.body.count))
                output.appendUTF8("\r\n")
            }
            output.appendUTF8("Date: ")
            output.appendUTF8(dateHeader)
            output.appendUTF8("\r\n")
            if !keepAlive {
                output.appendUTF8("Connection: close\r\n")
            } else if version == .http1_0 {
                output.appendUTF8("Connection: keep-alive\r\n")
            }
            output.appendUTF8("\r\n")
            if !omitBody { output.append(contentsOf: response.body) }
        }
    }
}

/// "content-type" -> "Content-Type", as HTTP/1.1 peers customarily see header names.
func canonicalHeaderName(_ name: String) -> String {
    var name = name
    return name.withUTF8 { bytes in
        String(unsafeUninitializedCapacity: bytes.count) { buffer in
            var upperNext = true
            for index in 0..<bytes.count {
                let byte = bytes[index]
                buffer[index] = upperNext && byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z") ? byte - 0x20 : byte
                upperNext = byte == UInt8(ascii: "-")
            }
            return bytes.count
        }
    }
}

/// The current time as an HTTP Date header value (RFC 9110 IMF-fixdate).
func httpDate() -> String {
    formatUTC(time(nil), "%a, %d %b %Y %H:%M:%S GMT")
}

func usleepMilliseconds(_ milliseconds: UInt32) {
    usleep(milliseconds * 1000)
}
