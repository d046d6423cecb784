import COpenSSL
import CertgateCrypto
import CertgateNet

/// How a TLS client trusts servers and presents itself (the Kubernetes API client).
public struct TLSClientConfiguration: Sendable {
    /// CAs to trust; nil trusts the system's CA store.
    public var trustRoots: [Certificate]?
    /// A client certificate (then intermediates) and its key, for servers that ask.
    public var clientCertificateChain: [Certificate]?
    public var clientKey: PrivateKey?
    /// Skip verifying the server. Only for a kubeconfig's insecure-skip-tls-verify, and only
    /// when the operator explicitly allows it.
    public var insecureSkipVerify: Bool

    public init(trustRoots: [Certificate]? = nil, clientCertificateChain: [Certificate]? = nil,
                clientKey: PrivateKey? = nil, insecureSkipVerify: Bool = false) {
        self.trustRoots = trustRoots
        self.clientCertificateChain = clientCertificateChain
        self.clientKey = clientKey
        self.insecureSkipVerify = insecureSkipVerify
    }
}

/// An OpenSSL client SSL_CTX, set up once and never modified afterwards.
///
/// `@unchecked Sendable`: immutable after `init`, and SSL_new on a shared context is thread-safe.
public final class TLSClientContext: @unchecked Sendable {
    let pointer: OpaquePointer
    private let verifies: Bool

    public init(_ configuration: TLSClientConfiguration) throws {
        ERR_clear_error()
        guard let ctx = SSL_CTX_new(TLS_client_method()) else { throw OpenSSLError.drain("creating a TLS client context") }
        pointer = ctx
        verifies = !configuration.insecureSkipVerify
        guard certgate_SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1 else {
            throw OpenSSLError.drain("setting TLS 1.2 as the minimum version")
        }
        SSL_CTX_set_options(ctx, certgate_SSL_OP_NO_RENEGOTIATION | certgate_SSL_OP_NO_COMPRESSION)
        _ = certgate_SSL_CTX_set_mode(ctx, Int(SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER))
        guard SSL_CTX_set_cipher_list(ctx, TLSContext.tls12Ciphers) == 1 else { throw OpenSSLError.drain("setting TLS 1.2 ciphers") }
        let alpn: [UInt8] = [8] + Array("http/1.1".utf8)
        guard SSL_CTX_set_alpn_protos(ctx, alpn, UInt32(alpn.count)) == 0 else { throw OpenSSLError.drain("offering ALPN http/1.1") }

        if let roots = configuration.trustRoots {
            let store = SSL_CTX_get_cert_store(ctx)
            for root in roots {
                guard root.withUnsafePointer({ X509_STORE_add_cert(store, $0) }) == 1 else {
                    throw OpenSSLError.drain("trusting a CA certificate")
                }
            }
        } else if SSL_CTX_set_default_verify_paths(ctx) != 1 {
            throw OpenSSLError.drain("loading the system's CA certificates")
        }
        SSL_CTX_set_verify(ctx, verifies ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nil)

        if let chain = configuration.clientCertificateChain, let key = configuration.clientKey, let leaf = chain.first {
            guard leaf.matches(key) else {
                throw OpenSSLError("loading the client certificate", details: ["the client key does not match the client certificate"])
            }
            guard leaf.withUnsafePointer({ SSL_CTX_use_certificate(ctx, $0) }) == 1,
                  key.withUnsafePointer({ SSL_CTX_use_PrivateKey(ctx, $0) }) == 1 else {
                throw OpenSSLError.drain("using the client certificate")
            }
            for intermediate in chain.dropFirst() {
                guard intermediate.withUnsafePointer({ certgate_SSL_CTX_add1_chain_cert(ctx, $0) }) == 1 else {
                    throw OpenSSLError.drain("adding an intermediate to the client chain")
                }
            }
        }
    }

    deinit { SSL_CTX_free(pointer) }

    /// A client session on a connected, non-blocking socket (the socket stays the caller's).
    /// `serverName` is sent as SNI (for DNS names) and checked against the server's
    /// certificate (DNS name or IP address), as client-go does.
    public func makeClientSession(descriptor: Int32, serverName: String) throws -> TLSSession {
        ERR_clear_error()
        guard let ssl = SSL_new(pointer) else { throw OpenSSLError.drain("creating a TLS session") }
        let session = TLSSession(takingOwnership: ssl)
        guard SSL_set_fd(ssl, descriptor) == 1 else { throw OpenSSLError.drain("attaching the TLS session to its socket") }
        // IP literals are checked against IP SANs and get no SNI (RFC 6066 section 3).
        let isIPAddress = (try? SocketAddress(host: serverName, port: 0)) != nil
        if !isIPAddress {
            guard certgate_SSL_set_tlsext_host_name(ssl, serverName) == 1 else { throw OpenSSLError.drain("setting SNI \(serverName)") }
        }
        if verifies {
            let ok = isIPAddress ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), serverName) : SSL_set1_host(ssl, serverName)
            guard ok == 1 else { throw OpenSSLError.drain("asking to verify the server's name \(serverName)") }
        }
        SSL_set_connect_state(ssl)
        return session
    }
}
