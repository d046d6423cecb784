import COpenSSL
import CertgateCrypto

/// One TLS connection (an OpenSSL SSL) on a non-blocking socket.
///
/// Used by one event-loop thread only. Every call clears the thread's error queue first and
/// reads `SSL_get_error` before anything else can touch the queue.
public final class TLSSession {
    /// What a non-blocking TLS call asks for next.
    public enum Status: Equatable {
        /// Bytes were moved (handshake: it finished).
        case done(Int)
        /// Call again, with the same arguments, once the socket is readable.
        case wantRead
        /// Call again, with the same arguments, once the socket is writable.
        case wantWrite
        /// The peer closed the TLS session or the TCP connection.
        case closed
    }

    private let ssl: OpaquePointer
    /// After a fatal error OpenSSL must not be asked to send close_notify.
    private var failed = false
    private var closeNotifySent = false
    /// The context whose callbacks (session tickets) this session may still call.
    private let context: AnyObject?
    /// Where a server session's records collect until ``sendCollectedOutput(_:)``; owned by
    /// `ssl`. Nil for sessions that write to their socket directly.
    private let collectedOutput: OpaquePointer?

    init(takingOwnership ssl: OpaquePointer, keepingAlive context: AnyObject? = nil, collectedOutput: OpaquePointer? = nil) {
        self.ssl = ssl
        self.context = context
        self.collectedOutput = collectedOutput
    }

    /// Encrypted bytes waiting to be sent.
    public var collectedOutputCount: Int {
        guard let collectedOutput else { return 0 }
        var bytes: UnsafePointer<UInt8>?
        return certgate_tls_output_pending(collectedOutput, &bytes)
    }

    /// Hands the collected bytes to `send`, which returns how many it sent, and drops those.
    public func sendCollectedOutput(_ send: (UnsafeRawBufferPointer) throws -> Int) rethrows {
        guard let collectedOutput else { return }
        var bytes: UnsafePointer<UInt8>?
        let count = certgate_tls_output_pending(collectedOutput, &bytes)
        guard count > 0, let bytes else { return }
        let sent = try send(UnsafeRawBufferPointer(start: bytes, count: count))
        certgate_tls_output_consume(collectedOutput, sent)
    }

    deinit { SSL_free(ssl) }

    /// Advances the handshake.
    public func handshake() throws -> Status {
        clearErrorQueue()
        let result = SSL_do_handshake(ssl)
        if result == 1 { return .done(0) }
        return try interpret(result, "the TLS handshake")
    }

    /// Reads decrypted bytes into `buffer`.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Status {
        clearErrorQueue()
        var count = 0
        if SSL_read_ex(ssl, buffer.baseAddress, buffer.count, &count) == 1 { return .done(count) }
        return try interpret(0, "reading from the TLS connection")
    }

    /// Whether OpenSSL holds bytes read from the socket, decrypted or not, that a read would
    /// return: when it holds none, the socket's readiness tells whether more has come.
    public var hasBufferedInput: Bool { SSL_has_pending(ssl) == 1 }

    /// Encrypts and writes bytes from `buffer`; may take fewer than offered.
    public func write(from buffer: UnsafeRawBufferPointer) throws -> Status {
        clearErrorQueue()
        var count = 0
        if SSL_write_ex(ssl, buffer.baseAddress, buffer.count, &count) == 1 { return .done(count) }
        return try interpret(0, "writing to the TLS connection")
    }

    /// Empties this thread's OpenSSL error queue, as SSL_get_error needs before each call. It
    /// is nearly always empty already, and ERR_clear_error resets all sixteen of its slots
    /// whatever they hold (800 instructions, twice per request); SSL_get_error looks only at
    /// ERR_peek_error, so a queue it reports empty needs nothing.
    @inline(__always)
    private func clearErrorQueue() {
        if ERR_peek_error() != 0 { ERR_clear_error() }
    }

    /// Sends close_notify once, without waiting for the peer's; skipped after a fatal error.
    /// Later calls do nothing (a second SSL_shutdown would read, looking for the peer's).
    public func close() {
        guard !failed, !closeNotifySent else { return }
        closeNotifySent = true
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
        ERR_clear_error()
    }

    /// The ALPN protocol chosen in the handshake ("h2", "http/1.1"), if any.
    public var negotiatedProtocol: String? {
        var data: UnsafePointer<UInt8>?
        var length: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &data, &length)
        guard let data, length > 0 else { return nil }
        return String(decoding: UnsafeBufferPointer(start: data, count: Int(length)), as: UTF8.self)
    }

    /// "TLSv1.3", "TLSv1.2".
    public var protocolVersion: String {
        String(cString: SSL_get_version(ssl))
    }

    /// Whether this handshake resumed an earlier session.
    public var isResumed: Bool { SSL_session_reused(ssl) == 1 }

    /// Why the peer's certificate was not trusted ("unable to get local issuer certificate"),
    /// or nil when it was (or was not checked).
    public var verificationFailure: String? {
        let result = SSL_get_verify_result(ssl)
        guard result != X509_V_OK else { return nil }
        return String(cString: X509_verify_cert_error_string(result))
    }

    private func interpret(_ result: Int32, _ operation: String) throws -> Status {
        let code = SSL_get_error(ssl, result)
        switch code {
        case SSL_ERROR_WANT_READ: return .wantRead
        case SSL_ERROR_WANT_WRITE: return .wantWrite
        case SSL_ERROR_ZERO_RETURN: return .closed
        case SSL_ERROR_SYSCALL:
            failed = true
            let details = drainErrorQueue()
            if details.isEmpty { return .closed }  // the peer dropped TCP
            throw OpenSSLError(operation, details: details)
        default:
            failed = true
            throw OpenSSLError.drain(operation)
        }
    }
}
