import CertgateNet
import CertgateTLS

/// Time limits, in seconds, like Go's http.Server fields of the same meaning.
public struct HTTPTimeouts: Sendable {
    /// To finish the TLS handshake.
    public var handshake: Double = 10
    /// From the first byte of a request head to its end (cuts off slowloris clients).
    public var requestHeader: Double = 10
    /// From the end of a request head to the end of its body.
    public var requestBody: Double = 30
    /// A kept-alive connection with no request in progress is closed after this.
    public var idle: Double = 120
    /// Queued output that does not move for this long closes the connection.
    public var write: Double = 30
    /// How long a closing connection reads and drops what the peer still sends.
    public var linger: Double = 2

    public init() {}
}

/// HTTP/2 protections and sizes.
public struct HTTP2Settings: Sendable {
    /// SETTINGS_MAX_CONCURRENT_STREAMS announced to clients.
    public var maxConcurrentStreams: UInt32 = 100
    /// SETTINGS_INITIAL_WINDOW_SIZE for request bodies.
    public var initialWindowSize: UInt32 = 1 << 20
    /// Token bucket on RST_STREAM frames from a client (CVE-2023-44487, "rapid reset"): a
    /// client that resets more than `resetBurst` streams at once, or more than `resetRate`
    /// a second after that, gets GOAWAY and is closed.
    public var resetBurst: UInt64 = 1000
    public var resetRate: UInt64 = 33
    /// CONTINUATION frames allowed after one HEADERS frame (CVE-2024-28182).
    public var maxContinuations: Int = 8

    public init() {}
}

/// Everything that shapes one listening server.
public struct HTTPServerConfiguration: Sendable {
    /// A name for logs and the `server` label of metrics ("webhook", "metrics").
    public var name: String
    public var addresses: [SocketAddress]
    /// TLS from a hot-reloaded certificate; nil serves plain HTTP/1.1 (the metrics port).
    public var tls: ServingCertificate?
    public var limits = HTTPLimits()
    public var timeouts = HTTPTimeouts()
    public var http2 = HTTP2Settings()
    /// Connections past this are closed as soon as they are accepted.
    public var maxConnections = 4096

    public init(name: String, addresses: [SocketAddress], tls: ServingCertificate?) {
        self.name = name
        self.addresses = addresses
        self.tls = tls
    }
}

/// Timeouts converted once to nanoseconds of the monotonic clock.
struct TimeoutNanos: Sendable {
    let handshake, requestHeader, requestBody, idle, write, linger: UInt64

    init(_ timeouts: HTTPTimeouts) {
        func nanos(_ seconds: Double) -> UInt64 { UInt64(max(0.001, seconds) * 1e9) }
        handshake = nanos(timeouts.handshake)
        requestHeader = nanos(timeouts.requestHeader)
        requestBody = nanos(timeouts.requestBody)
        idle = nanos(timeouts.idle)
        write = nanos(timeouts.write)
        linger = nanos(timeouts.linger)
    }
}
