import COpenSSL
import CertgateCrypto

/// How a TLS server presents itself and what it accepts.
public struct TLSServerConfiguration: Sendable {
    /// The serving certificate first, then any intermediates.
    public var certificateChain: [Certificate]
    public var privateKey: PrivateKey
    /// CAs whose client certificates are accepted; when set, a client certificate is required.
    public var clientCertificateAuthorities: [Certificate]?
    /// Offer HTTP/2 ("h2") in ALPN besides HTTP/1.1.
    public var offerHTTP2: Bool
    /// Bound on the TLS 1.2 session-ID cache, for clients without tickets.
    public var sessionCacheSize: Int
    /// The keys that seal session tickets; share one across the contexts of one server so
    /// tickets survive a certificate reload.
    public var ticketKeys: SessionTicketKeys

    public init(certificateChain: [Certificate], privateKey: PrivateKey,
                clientCertificateAuthorities: [Certificate]? = nil, offerHTTP2: Bool = true,
                sessionCacheSize: Int = 1024, ticketKeys: SessionTicketKeys = SessionTicketKeys()) {
        self.certificateChain = certificateChain
        self.privateKey = privateKey
        self.clientCertificateAuthorities = clientCertificateAuthorities
        self.offerHTTP2 = offerHTTP2
        self.sessionCacheSize = sessionCacheSize
        self.ticketKeys = ticketKeys
    }
}

/// An OpenSSL SSL_CTX set up once and never modified afterwards.
///
/// OpenSSL forbids changing a context that connections use, so a certificate rotation
/// builds a new `TLSContext` and new connections pick it up; open ones keep theirs.
/// `@unchecked Sendable`: immutable after `init`, and SSL_new on a shared context is thread-safe.
public final class TLSContext: @unchecked Sendable {
    let pointer: OpaquePointer
    /// The serving certificate (leaf), for expiry metrics and logs.
    public let leaf: Certificate
    /// Held for the ticket callback, which reaches it through the SSL_CTX's ex_data.
    private let ticketKeys: SessionTicketKeys

    /// TLS 1.2 suites: ECDHE with AEAD only (Mozilla "intermediate" without DHE).
    static let tls12Ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" +
        "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" +
        "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

    /// TLS 1.3 suites: OpenSSL's three defaults, in the order of the TLS 1.2 list and of
    /// Mozilla's "intermediate" (AES-128-GCM first). OpenSSL's own order puts AES-256-GCM
    /// first, which under server preference made every handshake hash with SHA-384: about
    /// 15 µs more per full handshake than the SHA-256 suite, for no gain against any attack.
    static let tls13Suites = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

    public init(server configuration: TLSServerConfiguration) throws {
        guard let leaf = configuration.certificateChain.first else {
            throw OpenSSLError("building the TLS context", details: ["the certificate file holds no certificate"])
        }
        ERR_clear_error()
        guard let ctx = SSL_CTX_new(TLS_server_method()) else { throw OpenSSLError.drain("creating a TLS server context") }
        pointer = ctx
        self.leaf = leaf
        ticketKeys = configuration.ticketKeys

        guard certgate_SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1 else {
            throw OpenSSLError.drain("setting TLS 1.2 as the minimum version")
        }
        SSL_CTX_set_options(ctx, certgate_SSL_OP_NO_RENEGOTIATION | certgate_SSL_OP_CIPHER_SERVER_PREFERENCE
            | certgate_SSL_OP_NO_COMPRESSION | certgate_SSL_OP_IGNORE_UNEXPECTED_EOF)
        // Partial writes and a moving buffer let a non-blocking writer retry from its own queue;
        // released buffers keep an idle connection's footprint small.
        _ = certgate_SSL_CTX_set_mode(ctx, Int(SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
            | SSL_MODE_RELEASE_BUFFERS))
        // Read what the socket has in one read() rather than a record header and then its
        // body, as nginx does: a full handshake and request took 12.7 reads, now 4.8. Bytes
        // read ahead wait inside OpenSSL where epoll cannot see them; Connection reads until
        // OpenSSL holds none (SSL_has_pending), so none is left behind.
        certgate_SSL_CTX_set_read_ahead(ctx, 1)
        guard SSL_CTX_set_cipher_list(ctx, TLSContext.tls12Ciphers) == 1 else { throw OpenSSLError.drain("setting TLS 1.2 ciphers") }
        guard SSL_CTX_set_ciphersuites(ctx, TLSContext.tls13Suites) == 1 else { throw OpenSSLError.drain("setting TLS 1.3 suites") }
        guard certgate_SSL_CTX_set1_groups_list(ctx, "X25519:P-256:P-384") == 1 else { throw OpenSSLError.drain("setting key exchange groups") }
        _ = certgate_SSL_CTX_set_session_cache_mode(ctx, Int(SSL_SESS_CACHE_SERVER))
        _ = certgate_SSL_CTX_sess_set_cache_size(ctx, configuration.sessionCacheSize)
        _ = SSL_CTX_set_num_tickets(ctx, 1)
        ticketKeys.install(on: ctx)
        let sessionContext = try TLSContext.sessionContext(clientCertificateAuthorities: configuration.clientCertificateAuthorities)
        _ = SSL_CTX_set_session_id_context(ctx, sessionContext, UInt32(sessionContext.count))

        guard leaf.withUnsafePointer({ SSL_CTX_use_certificate(ctx, $0) }) == 1 else {
            throw OpenSSLError.drain("using the serving certificate")
        }
        for intermediate in configuration.certificateChain.dropFirst() {
            guard intermediate.withUnsafePointer({ certgate_SSL_CTX_add1_chain_cert(ctx, $0) }) == 1 else {
                throw OpenSSLError.drain("adding an intermediate certificate to the chain")
            }
        }
        guard configuration.privateKey.withUnsafePointer({ SSL_CTX_use_PrivateKey(ctx, $0) }) == 1 else {
            throw OpenSSLError.drain("using the private key")
        }
        guard SSL_CTX_check_private_key(ctx) == 1 else {
            throw OpenSSLError.drain("checking that the private key matches the serving certificate")
        }

        if let authorities = configuration.clientCertificateAuthorities {
            guard !authorities.isEmpty else {
                throw OpenSSLError("loading the client CA", details: ["the client CA file holds no certificate"])
            }
            let store = SSL_CTX_get_cert_store(ctx)
            for authority in authorities {
                guard authority.withUnsafePointer({ X509_STORE_add_cert(store, $0) }) == 1,
                      authority.withUnsafePointer({ SSL_CTX_add_client_CA(ctx, $0) }) == 1 else {
                    throw OpenSSLError.drain("trusting a client CA certificate")
                }
            }
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nil)
        }

        // The callback captures nothing; whether h2 may be chosen travels in its argument.
        let offerH2 = UnsafeMutableRawPointer(bitPattern: configuration.offerHTTP2 ? 1 : 2)
        SSL_CTX_set_alpn_select_cb(ctx, selectApplicationProtocol, offerH2)
    }

    deinit { SSL_CTX_free(pointer) }

    /// A server-side session on an accepted, non-blocking socket (the socket stays the
    /// caller's). It reads from the socket and collects what it writes: the caller sends that
    /// with ``TLSSession/sendCollectedOutput(_:)`` before it waits on the socket.
    public func makeServerSession(descriptor: Int32) throws -> TLSSession {
        ERR_clear_error()
        guard let method = collectingOutputMethod else { throw OpenSSLError.drain("making the TLS output method") }
        guard let ssl = SSL_new(pointer) else { throw OpenSSLError.drain("creating a TLS session") }
        guard let input = BIO_new_socket(descriptor, BIO_NOCLOSE) else {
            SSL_free(ssl)
            throw OpenSSLError.drain("attaching the TLS session to its socket")
        }
        guard let output = BIO_new(method) else {
            BIO_free(input)
            SSL_free(ssl)
            throw OpenSSLError.drain("making the TLS session's output buffer")
        }
        SSL_set_bio(ssl, input, output)  // the session owns both from here
        SSL_set_accept_state(ssl)
        return TLSSession(takingOwnership: ssl, keepingAlive: self, collectedOutput: output)
    }

    /// Sessions resume only where they were made under the same client-certificate rule: a
    /// session from before the client CAs changed would skip checking the client against
    /// the new ones. So the context names the CA set (SHA-256 over their fingerprints).
    static func sessionContext(clientCertificateAuthorities: [Certificate]?) throws -> [UInt8] {
        guard let authorities = clientCertificateAuthorities else { return Array("certgate".utf8) }
        var fingerprints: [UInt8] = []
        for authority in authorities {
            var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
            var length: UInt32 = 0
            guard authority.withUnsafePointer({ X509_digest($0, EVP_sha256(), &digest, &length) }) == 1 else {
                throw OpenSSLError.drain("fingerprinting a client CA certificate")
            }
            fingerprints += digest.prefix(Int(length))
        }
        var context = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        guard EVP_Digest(fingerprints, fingerprints.count, &context, &length, EVP_sha256(), nil) == 1 else {
            throw OpenSSLError.drain("naming the client CA set")
        }
        return Array(context.prefix(Int(min(length, UInt32(SSL_MAX_SID_CTX_LENGTH)))))
    }
}

/// ALPN: the server picks, preferring h2 (when offered) over http/1.1, pointing into the
/// client's own list so the answer outlives this call.
private func selectApplicationProtocol(
    _ ssl: OpaquePointer?, _ out: UnsafeMutablePointer<UnsafePointer<UInt8>?>?, _ outLength: UnsafeMutablePointer<UInt8>?,
    _ input: UnsafePointer<UInt8>?, _ inputLength: UInt32, _ argument: UnsafeMutableRawPointer?
) -> Int32 {
    guard let input, let out, let outLength else { return SSL_TLSEXT_ERR_NOACK }
    let allowH2 = Int(bitPattern: argument) == 1
    let wanted: [[UInt8]] = allowH2 ? [Array("h2".utf8), Array("http/1.1".utf8)] : [Array("http/1.1".utf8)]
    for protocolName in wanted {
        var index = 0
        while index < Int(inputLength) {
            let length = Int(input[index])
            let start = index + 1
            if start + length > Int(inputLength) { break }
            if length == protocolName.count && (0..<length).allSatisfy({ input[start + $0] == protocolName[$0] }) {
                out.pointee = input + start
                outLength.pointee = UInt8(length)
                return SSL_TLSEXT_ERR_OK
            }
            index = start + length
        }
    }
    return SSL_TLSEXT_ERR_NOACK
}

/// The collecting BIO's method, made once and kept for the life of the process (every
/// server session's output BIO points at it).
private nonisolated(unsafe) let collectingOutputMethod: OpaquePointer? = certgate_tls_output_method_new()
