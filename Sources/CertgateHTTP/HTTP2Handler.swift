import CertgateSystem
import CNGHTTP2
import CertgateNet
import Logging

/// HTTP/2 on one connection through libnghttp2, serving the same handlers as HTTP/1.1.
///
/// nghttp2 does the framing, HPACK, flow control and the protocol's own protections (the
/// RST_STREAM rate limit against rapid reset, the CONTINUATION limit); this type keeps
/// per-stream request state, applies Certgate's header and body limits, and answers.
/// Bytes go in through `nghttp2_session_mem_recv` and come out of `nghttp2_session_mem_send`
/// into the connection's queue, so a whole batch of streams leaves in one write.
final class HTTP2Handler: ProtocolHandler {
    /// One request in progress.
    final class Stream {
        let id: Int32
        var method = ""
        var path = ""
        var headers = HTTPHeaders()
        var headerBytes = 0
        var headersTooLarge = false
        var body: [UInt8] = []
        var started: UInt64
        /// Whether the client finished sending (END_STREAM seen).
        var requestComplete = false
        /// Whether an answer has been submitted (possibly before the request completed).
        var answered = false
        var counted = false
        var responseBody: [UInt8] = []
        var responseOffset = 0
        /// A body written over time; DATA waits (deferred) while it has nothing new.
        var live: ResponseStream?
        var liveFinished = false

        init(id: Int32, started: UInt64) {
            self.id = id
            self.started = started
        }
    }

    private unowned let connection: Connection
    private var session: OpaquePointer?
    private var streams: [Int32: Stream] = [:]
    /// Request body bytes held across all streams: each stream is bounded by the body limit,
    /// and the connection by twice that, so 100 streams cannot make it hold 100 bodies.
    private var bufferedBodyBytes = 0
    private var lastActivity: UInt64
    private var goingAway = false
    private var failed = false

    init(connection: Connection, now: UInt64) {
        self.connection = connection
        lastActivity = now
        let settings = connection.context.server.configuration.http2

        var callbacks: OpaquePointer?
        nghttp2_session_callbacks_new(&callbacks)
        defer { nghttp2_session_callbacks_del(callbacks) }
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, onBeginHeaders)
        nghttp2_session_callbacks_set_on_header_callback(callbacks, onHeader)
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, onFrameReceived)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, onDataChunk)
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, onStreamClose)
        nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, onFrameSent)

        var options: OpaquePointer?
        nghttp2_option_new(&options)
        defer { nghttp2_option_del(options) }
        nghttp2_option_set_stream_reset_rate_limit(options, settings.resetBurst, settings.resetRate)
        nghttp2_option_set_max_continuations(options, settings.maxContinuations)

        let userData = Unmanaged.passUnretained(self).toOpaque()
        if nghttp2_session_server_new2(&session, callbacks, userData, options) != 0 {
            failed = true
            return
        }
        var entries = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue), value: settings.maxConcurrentStreams),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: settings.initialWindowSize),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue),
                                   value: UInt32(connection.context.server.configuration.limits.maxHeaderBytes)),
        ]
        nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &entries, entries.count)
        // The connection window is not covered by SETTINGS; open it as wide as one stream's.
        nghttp2_session_set_local_window_size(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, Int32(settings.initialWindowSize))
        pump()
    }

    deinit {
        for stream in streams.values { stream.live?.cancel() }
        if let session { nghttp2_session_del(session) }
    }

    private var server: ServerCore { connection.context.server }

    // MARK: ProtocolHandler

    func received(_ bytes: UnsafeRawBufferPointer) {
        guard let session, !failed else { return }
        lastActivity = monotonicNanoseconds()
        let result = nghttp2_session_mem_recv(session, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count)
        if result < 0 {
            // nghttp2 has queued a GOAWAY for protocol errors where it can; send it, then close.
            server.logger.debug("HTTP/2 protocol error", metadata: [
                "peer": "\(connection.peerDescription)", "error": "\(String(cString: nghttp2_strerror(Int32(result))))",
            ])
            failed = true
        }
        pump()
    }

    func peerClosed() {
        for stream in streams.values where !stream.answered && stream.counted {
            server.metrics.inFlight.add(-1)
        }
        streams.removeAll()
        connection.close()
    }

    func outputDrained() {
        // A response larger than the flow-control window continues once the client opens it.
        pump()
    }

    func tick(now: UInt64) {
        guard let session, !failed else { return }
        let timeouts = server.timeouts
        for stream in streams.values where !stream.requestComplete && !stream.answered && now &- stream.started > timeouts.requestBody {
            nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream.id, NGHTTP2_CANCEL.rawValue)
        }
        if streams.isEmpty && !connection.hasQueuedOutput && now &- lastActivity > timeouts.idle {
            goAway()
        }
        pump()
    }

    func beginShutdown() {
        goAway()
        // Streamed answers (watches) end now, so the connection can close; clients reconnect.
        for stream in streams.values { stream.live?.finish() }
        pump()
    }

    /// Announces that no new streams will be served; the connection closes once the last
    /// stream in flight is answered.
    private func goAway() {
        guard let session, !goingAway else { return }
        goingAway = true
        nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), nghttp2_session_get_last_proc_stream_id(session),
                              NGHTTP2_NO_ERROR.rawValue, nil, 0)
    }

    /// Moves everything nghttp2 wants to send into the connection queue and closes the
    /// connection when the session is over.
    private func pump() {
        guard let session else {
            connection.close()
            return
        }
        while true {
            var data: UnsafePointer<UInt8>?
            let count = nghttp2_session_mem_send(session, &data)
            if count < 0 {
                failed = true
                break
            }
            if count == 0 { break }
            connection.enqueue(UnsafeRawBufferPointer(start: data, count: count))
        }
        let finished = failed || (nghttp2_session_want_read(session) == 0 && nghttp2_session_want_write(session) == 0)
            || (goingAway && streams.isEmpty)
        if finished {
            connection.close(afterDrain: true)
        }
    }

    // MARK: Callbacks from nghttp2

    fileprivate func beginHeaders(streamID: Int32) {
        streams[streamID] = Stream(id: streamID, started: monotonicNanoseconds())
    }

    fileprivate func header(streamID: Int32, name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>) {
        guard let stream = streams[streamID] else { return }
        // Counted as SETTINGS_MAX_HEADER_LIST_SIZE counts: name + value + 32 per field.
        stream.headerBytes += name.count + value.count + 32
        if stream.headerBytes > server.configuration.limits.maxHeaderBytes {
            stream.headersTooLarge = true
            return
        }
        let nameText = String(decoding: name, as: UTF8.self)
        let valueText = String(decoding: value, as: UTF8.self)
        switch nameText {
        case ":method": stream.method = valueText
        case ":path": stream.path = valueText
        case ":scheme", ":authority": stream.headers.add(nameText, valueText)
        default: stream.headers.add(nameText, valueText)
        }
    }

    fileprivate func headersComplete(streamID: Int32, endStream: Bool) {
        guard let stream = streams[streamID] else { return }
        stream.counted = true
        server.metrics.inFlight.add(1)
        let limits = server.configuration.limits
        if stream.headersTooLarge {
            answer(stream, .error(431, "request header fields exceed \(limits.maxHeaderBytes) bytes"))
            return
        }
        if let declared = stream.headers["content-length"].flatMap(Int.init), declared > limits.maxBodyBytes {
            answer(stream, .error(413, "request body of \(declared) bytes exceeds the limit of \(limits.maxBodyBytes) bytes"))
            return
        }
        if endStream { requestComplete(stream) }
    }

    fileprivate func data(streamID: Int32, bytes: UnsafeBufferPointer<UInt8>) {
        guard let session, let stream = streams[streamID], !stream.answered else { return }
        let limit = server.configuration.limits.maxBodyBytes
        if stream.body.count + bytes.count > limit {
            answer(stream, .error(413, "request body exceeds the limit of \(limit) bytes"))
            return
        }
        if bufferedBodyBytes + bytes.count > 2 * limit {
            // Not processed, so the client may safely retry it (RFC 9113 8.7).
            releaseBody(of: stream)
            stream.answered = true
            server.metrics.inFlight.add(-1)
            nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), streamID, NGHTTP2_REFUSED_STREAM.rawValue)
            return
        }
        stream.body.append(contentsOf: bytes)
        bufferedBodyBytes += bytes.count
    }

    private func releaseBody(of stream: Stream) {
        bufferedBodyBytes -= stream.body.count
        stream.body = []
    }

    fileprivate func dataComplete(streamID: Int32) {
        guard let stream = streams[streamID] else { return }
        requestComplete(stream)
    }

    private func requestComplete(_ stream: Stream) {
        stream.requestComplete = true
        guard !stream.answered else { return }
        let (path, query) = splitTarget(stream.path)
        let request = HTTPRequest(method: stream.method, path: path, query: query, headers: stream.headers,
                                  body: stream.body, version: .http2)
        releaseBody(of: stream)
        stream.answered = true
        var response = server.respond(to: request, startedAt: stream.started, on: connection.context)
        server.metrics.inFlight.add(-1)
        if request.method == "HEAD" {
            response.headers.add("content-length", String(response.body.count))
            response.body = []
        }
        submit(response, on: stream)
    }

    /// Answers before the request is complete (a limit was exceeded); the rest of the
    /// request is reset once the answer is out.
    private func answer(_ stream: Stream, _ response: HTTPResponse) {
        guard !stream.answered else { return }
        stream.answered = true
        releaseBody(of: stream)
        server.metrics.inFlight.add(-1)
        connection.context.record(path: server.router.metricsPath(for: splitTarget(stream.path).path), status: response.status,
                                  startedAt: stream.started)
        submit(response, on: stream)
    }

    private func submit(_ response: HTTPResponse, on stream: Stream) {
        guard let session else { return }
        var fields: [(String, String)] = [(":status", String(response.status))]
        for (name, value) in response.headers { fields.append((name, value)) }
        if response.stream == nil && !response.headers.contains("content-length") {
            fields.append(("content-length", String(response.body.count)))
        }
        fields.append(("date", connection.context.dateHeader))
        stream.responseBody = response.body
        stream.responseOffset = 0

        // nghttp2 copies names and values during the call, so one temporary buffer serves all.
        let total = fields.reduce(0) { $0 + $1.0.utf8.count + $1.1.utf8.count }
        let storage = UnsafeMutablePointer<UInt8>.allocate(capacity: max(1, total))
        defer { storage.deallocate() }
        var cursor = storage
        var entries: [nghttp2_nv] = []
        entries.reserveCapacity(fields.count)
        for (name, value) in fields {
            let namePointer = cursor
            for byte in name.utf8 { cursor.pointee = byte; cursor += 1 }
            let valuePointer = cursor
            for byte in value.utf8 { cursor.pointee = byte; cursor += 1 }
            entries.append(nghttp2_nv(name: namePointer, value: valuePointer, namelen: name.utf8.count,
                                      valuelen: value.utf8.count, flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue)))
        }
        if response.body.isEmpty && response.stream == nil {
            nghttp2_submit_response(session, stream.id, entries, entries.count, nil)
        } else {
            var provider = nghttp2_data_provider(source: nghttp2_data_source(ptr: nil), read_callback: readResponseBody)
            nghttp2_submit_response(session, stream.id, entries, entries.count, &provider)
        }
        if let live = response.stream {
            stream.live = live
            let handler = WeakLoopBox(self)
            let loop = connection.context.loop
            let id = stream.id
            live.attach { loop.execute { handler.value?.sendStreamed(streamID: id) } }
        }
    }

    /// Moves what a streamed answer has into its DATA and sends it (on the loop thread).
    private func sendStreamed(streamID: Int32) {
        guard let session, let stream = streams[streamID], let live = stream.live else { return }
        let (pieces, finished, aborted) = live.take()
        if aborted {
            // The stream is cut off, as a broken proxy would; the connection and its other streams stay.
            nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), streamID, NGHTTP2_INTERNAL_ERROR.rawValue)
            pump()
            connection.sendQueued()
            return
        }
        if stream.responseOffset == stream.responseBody.count {
            stream.responseBody.removeAll(keepingCapacity: true)
            stream.responseOffset = 0
        }
        for piece in pieces { stream.responseBody.append(contentsOf: piece) }
        if finished { stream.liveFinished = true }
        nghttp2_session_resume_data(session, streamID)
        pump()
        connection.sendQueued()
    }

    fileprivate func readBody(streamID: Int32, into buffer: UnsafeMutablePointer<UInt8>, length: Int,
                              flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let stream = streams[streamID] else {
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
            return 0
        }
        let count = min(length, stream.responseBody.count - stream.responseOffset)
        if count > 0 {
            stream.responseBody.withUnsafeBufferPointer { body in
                buffer.update(from: body.baseAddress! + stream.responseOffset, count: count)
            }
            stream.responseOffset += count
        }
        guard stream.responseOffset == stream.responseBody.count else { return count }
        if stream.live != nil && !stream.liveFinished {
            // Nothing more yet: nghttp2 waits until sendStreamed resumes this stream.
            return count > 0 ? count : Int(NGHTTP2_ERR_DEFERRED.rawValue)
        }
        flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
        stream.responseBody = []
        return count
    }

    fileprivate func sentEndOfStream(streamID: Int32) {
        guard let session, let stream = streams[streamID], !stream.requestComplete else { return }
        // We answered early (413, 431): the client need not send the rest (RFC 9113 8.1).
        nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), streamID, NGHTTP2_NO_ERROR.rawValue)
    }

    fileprivate func streamClosed(streamID: Int32) {
        guard let stream = streams.removeValue(forKey: streamID) else { return }
        stream.live?.cancel()
        releaseBody(of: stream)
        if stream.counted && !stream.answered {
            server.metrics.inFlight.add(-1)
        }
    }
}

// nghttp2 calls these C functions with the handler as user data; they capture nothing.

private func handler(_ userData: UnsafeMutableRawPointer?) -> HTTP2Handler {
    Unmanaged<HTTP2Handler>.fromOpaque(userData!).takeUnretainedValue()
}

private func isRequestHeaders(_ frame: UnsafePointer<nghttp2_frame>) -> Bool {
    frame.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue) && frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST
}

/// A HEADERS frame after the request's body: trailers (their fields are not read).
private func isTrailers(_ frame: UnsafePointer<nghttp2_frame>) -> Bool {
    frame.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue) && frame.pointee.headers.cat == NGHTTP2_HCAT_HEADERS
}

private let onBeginHeaders: nghttp2_on_begin_headers_callback = { _, frame, userData in
    guard let frame, isRequestHeaders(frame) else { return 0 }
    handler(userData).beginHeaders(streamID: frame.pointee.hd.stream_id)
    return 0
}

private let onHeader: nghttp2_on_header_callback = { _, frame, name, nameLength, value, valueLength, _, userData in
    guard let frame, isRequestHeaders(frame) else { return 0 }
    handler(userData).header(streamID: frame.pointee.hd.stream_id,
                             name: UnsafeBufferPointer(start: name, count: nameLength),
                             value: UnsafeBufferPointer(start: value, count: valueLength))
    return 0
}

private let onFrameReceived: nghttp2_on_frame_recv_callback = { _, frame, userData in
    guard let frame else { return 0 }
    let endStream = frame.pointee.hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
    if isRequestHeaders(frame) {
        handler(userData).headersComplete(streamID: frame.pointee.hd.stream_id, endStream: endStream)
    } else if endStream && (frame.pointee.hd.type == UInt8(NGHTTP2_DATA.rawValue) || isTrailers(frame)) {
        // A request ends with END_STREAM on its last DATA frame, or on trailers after it.
        handler(userData).dataComplete(streamID: frame.pointee.hd.stream_id)
    }
    return 0
}

private let onDataChunk: nghttp2_on_data_chunk_recv_callback = { _, _, streamID, data, length, userData in
    handler(userData).data(streamID: streamID, bytes: UnsafeBufferPointer(start: data, count: length))
    return 0
}

private let onStreamClose: nghttp2_on_stream_close_callback = { _, streamID, _, userData in
    handler(userData).streamClosed(streamID: streamID)
    return 0
}

private let onFrameSent: nghttp2_on_frame_send_callback = { _, frame, userData in
    guard let frame else { return 0 }
    let type = frame.pointee.hd.type
    if (type == UInt8(NGHTTP2_DATA.rawValue) || type == UInt8(NGHTTP2_HEADERS.rawValue)),
       frame.pointee.hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0 {
        handler(userData).sentEndOfStream(streamID: frame.pointee.hd.stream_id)
    }
    return 0
}

private let readResponseBody: nghttp2_data_source_read_callback = { _, streamID, buffer, length, flags, _, userData in
    guard let buffer, let flags else { return Int(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue) }
    return handler(userData).readBody(streamID: streamID, into: buffer, length: length, flags: flags)
}
