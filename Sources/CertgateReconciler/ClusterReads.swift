import CertgateCrypto
import CertgateKube
import CertgateLocking
import CertgatePKI

/// Where a reconcile reads the cluster: a leadership term's caches (``TermCaches``), or the
/// API server itself (``LiveReads``, for a reconcile run on its own). The reconcile writes
/// through the client and tells the reads what it wrote, so that caches hold it at once.
public protocol ClusterReads: Sendable {
    /// The Pki; nil when it does not exist.
    func pki(namespace: String, name: String) throws -> Pki?
    /// The Secret with its data; nil when it does not exist.
    func secret(namespace: String, name: String) throws -> Secret?
    /// The pods of `namespace` that use the Secret `secretName` (volumes, projected volumes,
    /// env, envFrom).
    func pods(namespace: String, usingSecret secretName: String) throws -> [Pod]
    /// The API server's answer to a write of the reconcile's own.
    func wrote(_ pki: Pki)
    func wrote(_ secret: Secret)
}

/// What one reconcile works with: the term's reads, client, Event recorder and CA cache,
/// and whether the term is still current (every write asks first, so a term that ended
/// sends nothing more, even from a reconcile it was in the middle of).
public struct ReconcileContext: Sendable {
    public let client: KubeClient
    public let reads: any ClusterReads
    public let events: EventRecorder
    public let authorities: AuthorityCache
    public let isCurrent: @Sendable () -> Bool

    public init(client: KubeClient, reads: any ClusterReads, events: EventRecorder, authorities: AuthorityCache = AuthorityCache(),
                isCurrent: @escaping @Sendable () -> Bool = { true }) {
        self.client = client
        self.reads = reads
        self.events = events
        self.authorities = authorities
        self.isCurrent = isCurrent
    }

    /// Reads straight from the API server: for a reconcile run on its own, outside a term.
    public static func live(client: KubeClient, events: EventRecorder) -> ReconcileContext {
        ReconcileContext(client: client, reads: LiveReads(client: client), events: events)
    }
}

/// Every read is a request to the API server.
public struct LiveReads: ClusterReads {
    let client: KubeClient

    public init(client: KubeClient) { self.client = client }

    public func pki(namespace: String, name: String) throws -> Pki? {
        try client.getIfPresent(.pkis, namespace: namespace, name: name)
    }

    public func secret(namespace: String, name: String) throws -> Secret? {
        try client.getIfPresent(.secrets, namespace: namespace, name: name)
    }

    public func pods(namespace: String, usingSecret secretName: String) throws -> [Pod] {
        try client.list(.pods, namespace: namespace, of: Pod.self).items.filter { $0.secretNames.contains(secretName) }
    }

    public func wrote(_ pki: Pki) {}
    public func wrote(_ secret: Secret) {}
}


/// The issuers' CAs, each parsed once per resourceVersion of its Secret: a reconcile of an
/// up-to-date Pki neither reads nor parses its CA again.
public final class AuthorityCache: Sendable {
    private struct Entry {
        let resourceVersion: String
        let authority: Result<CertificateAuthority, AuthorityProblem>
    }

    private let entries = Locked<[String: Entry]>([:])
    private let parses = Locked(0)

    public init() {}

    /// How many times a CA Secret was parsed (for tests and the benchmark).
    public var parseCount: Int { parses.withLock { $0 } }

    /// The CA in `secret` (the Secret `reference` names), or what is wrong with it.
    func authority(in secret: Secret, _ reference: SecretReference) -> Result<CertificateAuthority, AuthorityProblem> {
        let key = "\(reference.namespace)/\(reference.name)"
        let version = secret.metadata.resourceVersion ?? ""
        // Parsed under the lock: the workers that meet a rotated CA together wait for one parse.
        return entries.withLock { entries in
            if !version.isEmpty, let entry = entries[key], entry.resourceVersion == version { return entry.authority }
            let parsed = AuthorityCache.parse(secret, reference)
            parses.withLock { $0 += 1 }
            entries[key] = Entry(resourceVersion: version, authority: parsed)
            return parsed
        }
    }

    /// A CA just created from `certificate` and `key` (the bootstrap), as its Secret now holds it.
    func store(_ authority: CertificateAuthority, for reference: SecretReference, resourceVersion: String?) {
        guard let resourceVersion else { return }
        entries.withLock { $0["\(reference.namespace)/\(reference.name)"] = Entry(resourceVersion: resourceVersion, authority: .success(authority)) }
    }

    private static func parse(_ secret: Secret, _ reference: SecretReference) -> Result<CertificateAuthority, AuthorityProblem> {
        guard let certificatePEM = secret.bytes("tls.crt"), let keyPEM = secret.bytes("tls.key") else {
            return .failure(AuthorityProblem("CAIncomplete", "the CA Secret \(reference.namespace)/\(reference.name) has no tls.crt and tls.key"))
        }
        do {
            // tls.crt: the signing CA, then its chain when it is an intermediate.
            let chain = try Certificate.chain(pem: certificatePEM)
            let key = try PrivateKey(pem: keyPEM)
            guard chain[0].matches(key) else {
                return .failure(AuthorityProblem("CAKeyMismatch", "tls.key of \(reference.namespace)/\(reference.name) does not match its tls.crt"))
            }
            let place = "\(reference.namespace)/\(reference.name)"
            guard chain[0].isCertificateAuthority else {
                return .failure(AuthorityProblem("NotCA", "the certificate in \(place) is not a CA (its basicConstraints do not say CA:TRUE); "
                                                 + "put a CA certificate and its key in that Secret"))
            }
            guard chain[0].allowsCertificateSigning else {
                return .failure(AuthorityProblem("CANoKeyCertSign", "the CA certificate in \(place) may not sign certificates (its keyUsage lacks "
                                                 + "keyCertSign); put a CA whose keyUsage includes keyCertSign in that Secret"))
            }
            guard chain[0].keyAlgorithm != nil else {
                return .failure(AuthorityProblem("CAUnsupportedKey", "the CA key in \(place) is of a type certgate cannot sign with; use ECDSA, RSA or Ed25519"))
            }
            return .success(CertificateAuthority(certificates: IssuerCertificates(tlsChain: chain, caPEM: secret.bytes("ca.crt")), key: key))
        } catch {
            return .failure(AuthorityProblem("CAUnparsable", "the CA Secret \(reference.namespace)/\(reference.name) does not parse: \(error)"))
        }
    }
}

/// What is wrong with an issuer's CA: in words for the Pki's condition and the log, a reason
/// for the failure metric, and when to look again (nil: when the CA Secret changes, which the
/// term's watch sees).
struct AuthorityProblem: NamedFailure, CustomStringConvertible {
    let reason: String
    let message: String
    var retryAfter: Double?

    init(_ reason: String, _ message: String, retryAfter: Double? = nil) {
        self.reason = reason
        self.message = message
        self.retryAfter = retryAfter
    }

    var description: String { message }
}
