import CertgateSystem
import CertgateLocking
import CertgateNet
import CertgateTLS
import Synchronization

/// Where an HTTPClient connects and how long it waits.
public struct HTTPClientConfiguration: Sendable {
    /// Host name or IP literal; also the TLS server name checked against the certificate.
    public var host: String
    public var port: UInt16
    /// TLS on every connection; nil speaks plain HTTP.
    public var tls: TLSClientContext?
    /// Seconds to connect and finish the TLS handshake.
    public var connectTimeout: Double = 10
    /// Seconds for a whole request and response, unless a call says otherwise.
    public var requestTimeout: Double = 30
    /// Kept-alive connections kept for reuse.
    public var maxIdleConnections = 4
    public var userAgent = "certgate"

    public init(host: String, port: UInt16, tls: TLSClientContext?) {
        self.host = host
        self.port = port
        self.tls = tls
    }
}

/// Lets another thread end a streaming call (an informer stopping its watch): the socket
/// is shut down, which wakes the waiting reader at once.
///
/// The shutdown happens under the lock, and the call detaches its connection under the same
/// lock before the connection goes back to the pool or is closed: a cancel can only ever
/// touch the socket of the call it was made for, never a reused or renumbered one.
public final class StreamCancellation: Sendable {
    private let state = Locked<(descriptor: Int32?, cancelled: Bool)>((nil, false))

    public init() {}

    public func cancel() {
        state.withLock { state in
            state.cancelled = true
            if let descriptor = state.descriptor { SocketIO.shutdownBoth(descriptor) }
        }
    }

    public var isCancelled: Bool { state.withLock { $0.cancelled } }

    /// Returns false when already cancelled.
    func attach(_ descriptor: Int32) -> Bool {
        state.withLock { state in
            guard !state.cancelled else { return false }
            state.descriptor = descriptor
            return true
        }
    }

    /// Ends the cancellation's hold on the connection; returns whether it was cancelled
    /// (its socket may have been shut down, so it must not be reused).
    func detach() -> Bool {
        state.withLock { state in
            state.descriptor = nil
            return state.cancelled
        }
    }
}

/// A request that failed in the client: it could not connect, verify the server, send or
/// read in time. An HTTP error status is not a failure here; callers read the status.
public struct HTTPClientError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A small HTTP/1.1 client for one server, with kept-alive connections reused across
/// requests, for callers that wait on their own thread (the Kubernetes API client).
///
/// Each request uses one connection alone; idle connections wait in a small pool. A request
/// that fails on a reused connection before any answer arrives is retried once on a new one
/// when it is idempotent, as Go's transport does for connections the server closed.
public final class HTTPClient: Sendable {
    public let configuration: HTTPClientConfiguration
    private let idle = Locked<[ClientConnection]>([])

    /// Runs after a streamed call has let go of its cancellation and before its connection
    /// is pooled: where a racing cancel would land (tests only).
    let beforePooling: (@Sendable () -> Void)?

    public convenience init(configuration: HTTPClientConfiguration) {
        self.init(configuration: configuration, beforePooling: nil)
    }

    init(configuration: HTTPClientConfiguration, beforePooling: (@Sendable () -> Void)?) {
        self.configuration = configuration
        self.beforePooling = beforePooling
    }

    deinit {
        for connection in idle.withLock({ $0 }) { connection.close() }
    }

    /// Sends `request` and reads the whole response within `timeout` seconds.
    public func send(_ request: HTTPRequest, timeout: Double? = nil) throws -> HTTPResponse {
        var response = HTTPResponse(status: 0)
        try exchange(request, deadline: deadline(timeout ?? configuration.requestTimeout)) { head in
            response.status = head.status
            response.headers = head.headers
            return true
        } body: { piece in
            response.body.append(contentsOf: piece)
            return true
        }
        return response
    }

    /// Sends `request` and hands the response's body to `body` as it arrives, with no
    /// overall timeout (a watch). `head` sees the status first; either returning false stops
    /// the stream and closes its connection. Returns when the server ends the response; throws
    /// a TimeoutError when nothing arrives for `idleTimeout` seconds.
    public func stream(_ request: HTTPRequest, cancellation: StreamCancellation? = nil, idleTimeout: Double? = nil,
                       head: (HTTPResponse) throws -> Bool, body: ([UInt8]) throws -> Bool) throws {
        try exchange(request, deadline: .max, idleTimeout: idleTimeout, cancellation: cancellation) { parsed in
            try head(HTTPResponse(status: parsed.status, headers: parsed.headers))
        } body: { piece in
            try body(piece)
        }
    }

    private func deadline(_ seconds: Double) -> UInt64 {
        monotonicNanoseconds() + UInt64(max(0.001, seconds) * 1e9)
    }

    private func exchange(_ request: HTTPRequest, deadline: UInt64, idleTimeout: Double? = nil, cancellation: StreamCancellation? = nil,
                          head: (HTTP1ResponseParser.Head) throws -> Bool, body: ([UInt8]) throws -> Bool) throws {
        let idempotent = ["GET", "HEAD", "PUT", "DELETE", "OPTIONS"].contains(request.method)
        var attempt = 0
        while true {
            attempt += 1
            let (connection, reused) = try checkOut(deadline: deadline)
            if let cancellation {
                // A cancelled stream's connection is shut down, so it never goes back to the pool.
                guard cancellation.attach(connection.descriptor) else {
                    checkIn(connection)
                    return
                }
            }
            do {
                let keepAlive = try connection.exchange(serialize(request), bodyless: request.method == "HEAD",
                                                        deadline: deadline, idleTimeout: idleTimeout, head: head, body: body)
                // Detached before the connection is pooled or closed: a cancel after this
                // line cannot reach it.
                let cancelled = cancellation?.detach() ?? false
                if cancellation != nil { beforePooling?() }
                if keepAlive && !cancelled { checkIn(connection) } else { connection.close() }
                return
            } catch let failure as ConnectionFailure where failure.beforeResponse && reused && idempotent && attempt == 1 {
                if cancellation?.detach() == true {
                    connection.close()
                    return
                }
                connection.close()
                continue
            } catch let failure as ConnectionFailure {
                let cancelled = cancellation?.detach() ?? false
                connection.close()
                if cancelled { return }
                throw failure.error
            } catch {
                _ = cancellation?.detach()
                connection.close()
                throw error
            }
        }
    }

    private func checkOut(deadline: UInt64) throws -> (ClientConnection, reused: Bool) {
        if let connection = idle.withLock({ $0.popLast() }) { return (connection, true) }
        let connectDeadline = min(deadline, monotonicNanoseconds() + UInt64(configuration.connectTimeout * 1e9))
        return (try ClientConnection(configuration: configuration, deadline: connectDeadline), false)
    }

    private func checkIn(_ connection: ClientConnection) {
        let surplus = idle.withLock { connections -> ClientConnection? in
            guard connections.count < configuration.maxIdleConnections else { return connection }
            connections.append(connection)
            return nil
        }
        surplus?.close()
    }

    private func serialize(_ request: HTTPRequest) -> [UInt8] {
        var target = request.path
        if let query = request.query { target += "?" + query }
        var text = "\(request.method) \(target) HTTP/1.1\r\n"
        let defaultPort: UInt16 = configuration.tls == nil ? 80 : 443
        let authority = HostPort(host: configuration.host, port: configuration.port)
        text += "Host: \(configuration.port == defaultPort ? authority.bracketedHost : authority.description)\r\n"
        text += "User-Agent: \(configuration.userAgent)\r\n"
        for (name, value) in request.headers where name != "host" && name != "content-length" && name != "user-agent" {
            text += "\(canonicalHeaderName(name)): \(value)\r\n"
        }
        if !request.body.isEmpty || ["POST", "PUT", "PATCH"].contains(request.method) {
            text += "Content-Length: \(request.body.count)\r\n"
        }
        text += "\r\n"
        return Array(text.utf8) + request.body
    }
}

/// A failure on a connection, and whether it came before any of the response.
struct ConnectionFailure: Error {
    let error: Error
    let beforeResponse: Bool
}

/// One client connection, used by one request at a time.
/// `@unchecked Sendable`: it moves between threads only through the client's locked pool.
final class ClientConnection: @unchecked Sendable {
    let descriptor: Int32
    private let tls: TLSSession?
    private let target: String
    private var closed = false
    /// Kept across requests: bytes after one response belong to the next.
    private var parser = HTTP1ResponseParser()

    /// Connects and finishes the TLS handshake. On a failure the descriptor is closed here,
    /// once, before the object exists: a deinit would otherwise close it a second time,
    /// when its number may already belong to another thread's socket.
    init(configuration: HTTPClientConfiguration, deadline: UInt64) throws {
        let target = "\(configuration.host):\(configuration.port)"
        let remaining = Double(deadline &- monotonicNanoseconds()) / 1e9
        let descriptor = try ClientSocket.connect(host: configuration.host, port: configuration.port, timeout: remaining)
        var session: TLSSession?
        if let context = configuration.tls {
            do {
                let made = try context.makeClientSession(descriptor: descriptor, serverName: configuration.host)
                try ClientConnection.handshake(made, descriptor: descriptor, target: target, deadline: deadline)
                session = made
            } catch {
                SocketIO.close(descriptor)
                throw error
            }
        }
        self.target = target
        self.descriptor = descriptor
        tls = session
    }

    private static func handshake(_ session: TLSSession, descriptor: Int32, target: String, deadline: UInt64) throws {
        while true {
            let status: TLSSession.Status
            do {
                status = try session.handshake()
            } catch {
                let reason = session.verificationFailure.map { " (\($0))" } ?? ""
                throw HTTPClientError("TLS handshake with \(target) failed\(reason): \(error)")
            }
            switch status {
            case .done: return
            case .wantRead: try SocketIO.wait(descriptor, writable: false, deadline: deadline, "in the TLS handshake with \(target)")
            case .wantWrite: try SocketIO.wait(descriptor, writable: true, deadline: deadline, "in the TLS handshake with \(target)")
            case .closed: throw HTTPClientError("\(target) closed the connection during the TLS handshake")
            }
        }
    }

    /// Writes a request and reads its response. Returns whether the connection may be reused.
    func exchange(_ request: [UInt8], bodyless: Bool, deadline: UInt64, idleTimeout: Double? = nil,
                  head: (HTTP1ResponseParser.Head) throws -> Bool, body: ([UInt8]) throws -> Bool) throws -> Bool {
        var answered = false
        do {
            try write(request, deadline: deadline)
            var keepAlive = false
            var scratch = [UInt8](repeating: 0, count: 16 * 1024)
            while true {
                while let event = try parser.next(bodyless: bodyless) {
                    switch event {
                    case .head(let parsed):
                        answered = true
                        keepAlive = parsed.keepAlive
                        guard try head(parsed) else { return false }
                    case .body(let piece):
                        guard try body(piece) else { return false }
                    case .end:
                        return keepAlive
                    }
                }
                // Each read may wait for the idle time at most: a stream the server went silent on ends.
                let readDeadline = idleTimeout.map { min(deadline, monotonicNanoseconds() + UInt64($0 * 1e9)) } ?? deadline
                let count = try read(into: &scratch, deadline: readDeadline)
                if count == 0 {
                    guard answered else { throw HTTPClientError("\(target) closed the connection before answering") }
                    if case .end = try parser.peerClosed() { return false }
                }
                scratch.withUnsafeBytes { parser.append(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
            }
        } catch let error as HTTPParseError {
            throw ConnectionFailure(error: HTTPClientError("bad response from \(target): \(error.message)"), beforeResponse: !answered)
        } catch let error as TimeoutError {
            throw ConnectionFailure(error: error, beforeResponse: false)
        } catch let failure as ConnectionFailure {
            throw failure
        } catch let error as HTTPClientError {
            throw ConnectionFailure(error: error, beforeResponse: !answered)
        } catch {
            throw ConnectionFailure(error: HTTPClientError("request to \(target) failed: \(error)"), beforeResponse: !answered)
        }
    }

    private func write(_ bytes: [UInt8], deadline: UInt64) throws {
        var offset = 0
        while offset < bytes.count {
            let progress: Int? = try bytes.withUnsafeBytes { raw in
                let pending = UnsafeRawBufferPointer(rebasing: raw[offset...])
                if let tls {
                    switch try tls.write(from: pending) {
                    case .done(let n): return n
                    case .wantRead: try SocketIO.wait(descriptor, writable: false, deadline: deadline, "sending to \(target)"); return nil
                    case .wantWrite: try SocketIO.wait(descriptor, writable: true, deadline: deadline, "sending to \(target)"); return nil
                    case .closed: throw HTTPClientError("\(target) closed the connection")
                    }
                }
                switch try SocketIO.write(descriptor, from: pending) {
                case .done(let n): return n
                case .wouldBlock: try SocketIO.wait(descriptor, writable: true, deadline: deadline, "sending to \(target)"); return nil
                }
            }
            offset += progress ?? 0
        }
    }

    /// Reads what is available, waiting until `deadline`; 0 means the server closed.
    private func read(into buffer: inout [UInt8], deadline: UInt64) throws -> Int {
        while true {
            let count: Int? = try buffer.withUnsafeMutableBytes { raw in
                if let tls {
                    switch try tls.read(into: raw) {
                    case .done(let n): return n
                    case .closed: return 0
                    case .wantRead: try SocketIO.wait(descriptor, writable: false, deadline: deadline, "waiting for \(target)"); return nil
                    case .wantWrite: try SocketIO.wait(descriptor, writable: true, deadline: deadline, "waiting for \(target)"); return nil
                    }
                }
                switch try SocketIO.read(descriptor, into: raw) {
                case .done(let n): return n
                case .wouldBlock: try SocketIO.wait(descriptor, writable: false, deadline: deadline, "waiting for \(target)"); return nil
                }
            }
            if let count { return count }
        }
    }

    func close() {
        guard !closed else { return }
        closed = true
        tls?.close()
        SocketIO.close(descriptor)
    }

    deinit { close() }
}
