import CertgateCrypto
import CertgateJSON

/// A certificate issued for a Pki, ready for a kubernetes.io/tls Secret.
public struct IssuedCertificate: Sendable {
    /// tls.crt: the leaf, then the CA certificates between it and the root (the issuing
    /// CA itself when it is the root).
    public let certificateChainPEM: String
    /// tls.key: PKCS#8.
    public let privateKeyPEM: String
    /// ca.crt: the issuer's root, then any former roots still trusted during a CA rotation.
    public let caPEM: String
    public let serialNumber: String
    /// Seconds since 1970.
    public let notBefore: Int64
    public let notAfter: Int64
    /// When the reconciler renews it: notAfter minus renewBefore (a third of the duration by default).
    public let renewalTime: Int64
    /// The issuer's CA ends before spec.duration would have: notAfter is the CA's.
    public let cutShortByIssuer: Bool
}

/// A CA's certificates, without its key: what judging a certificate it issued needs (the
/// reconciler and `certgate status` judge alike). tls.crt holds the signing CA, then the chain
/// up to the root when it is an intermediate; ca.crt the root when tls.crt does not.
public struct IssuerCertificates: Sendable {
    /// The certificate that signs.
    public let certificate: Certificate
    /// The CA certificates above `certificate`, as tls.crt lists them.
    public let chain: [Certificate]
    /// The root peers trust: the self-issued end of the chain, else the CA Secret's ca.crt,
    /// else the last certificate known.
    public let root: Certificate

    public init(certificate: Certificate, chain: [Certificate] = [], root: Certificate? = nil) {
        self.certificate = certificate
        self.chain = chain
        self.root = root ?? (chain.last { $0.isSelfIssued } ?? chain.last ?? certificate)
    }

    /// A CA Secret's certificates: `tlsChain` is its tls.crt (not empty), `caPEM` its ca.crt,
    /// whose first certificate is the root when tls.crt does not end in one.
    public init(tlsChain: [Certificate], caPEM: [UInt8]?) {
        let root = tlsChain.last { $0.isSelfIssued } ?? caPEM.flatMap { try? Certificate.chain(pem: $0).first }
        self.init(certificate: tlsChain[0], chain: Array(tlsChain.dropFirst()), root: root)
    }

    /// What follows the leaf in tls.crt: the signing CA and the intermediates above it,
    /// without a root (except a self-signed issuing CA, which is both).
    public var intermediates: [Certificate] {
        [certificate] + chain.filter { !$0.isSelfIssued }
    }

    /// The end of the shortest-lived certificate in the chain: no leaf outlives it.
    public var notAfter: Int64 { ([certificate] + chain).map(\.notAfter).min() ?? certificate.notAfter }
}

/// A CA's signing material, from its Secret: its certificates and tls.key.
public struct CertificateAuthority: Sendable {
    public let certificates: IssuerCertificates
    public let key: PrivateKey

    public init(certificate: Certificate, key: PrivateKey, chain: [Certificate] = [], root: Certificate? = nil) {
        self.init(certificates: IssuerCertificates(certificate: certificate, chain: chain, root: root), key: key)
    }

    public init(certificates: IssuerCertificates, key: PrivateKey) {
        self.certificates = certificates
        self.key = key
    }

    public var certificate: Certificate { certificates.certificate }
    public var chain: [Certificate] { certificates.chain }
    public var root: Certificate { certificates.root }
    public var intermediates: [Certificate] { certificates.intermediates }
    public var notAfter: Int64 { certificates.notAfter }
}

/// Turns a Pki's spec into a certificate, with OpenSSL (CertgateCrypto). The spec must
/// have passed `judge`; what the spec leaves out takes the policy's defaults.
public enum Issuance {
    /// The clock-skew allowance: certificates start five minutes before they are issued.
    public static let backdate: Int64 = 300

    /// - Parameter formerRoots: CA certificates to keep in ca.crt besides the issuer's root
    ///   (the roots before a rotation, while leaves signed by them are still in use).
    public static func issue(_ spec: PkiSpec, policy: Policy, by authority: CertificateAuthority, now: Int64,
                             reusing existingKey: PrivateKey? = nil, formerRoots: [Certificate] = []) throws -> IssuedCertificate {
        let duration = Int64(spec.duration.flatMap(parseGoDuration) ?? policy.defaultDuration)
        let algorithm = keyAlgorithm(spec.privateKey, policy: policy)
        let key = try existingKey.flatMap { $0.algorithm == algorithm ? $0 : nil } ?? PrivateKey.generate(algorithm)
        let usages = spec.usages ?? defaultUsages
        let notAfter = min(now + duration, authority.notAfter)
        var template = CertificateTemplate(
            commonName: spec.commonName, dnsNames: spec.dnsNames ?? [], ipAddresses: spec.ipAddresses ?? [],
            extendedKeyUsages: extendedKeyUsages(usages), keyUsages: usages.contains("key encipherment") ? [.keyEncipherment] : [],
            notBefore: now - backdate, notAfter: notAfter)
        template.uris = spec.uris ?? []
        template.emailAddresses = spec.emailAddresses ?? []
        template.subject = subjectAttributes(spec.subject)
        let leaf = try CertificateSigner.sign(template, subjectKey: key, issuer: (authority.certificate, authority.key))
        let rootPEM = try authority.root.pem()
        var caPEM = rootPEM
        for former in formerRoots where former.notAfter > now {
            let pem = try former.pem()
            if caPEM.rangeOfFirst(pem) == nil { caPEM += pem }
        }
        return IssuedCertificate(certificateChainPEM: try leaf.pem() + authority.intermediates.map { try $0.pem() }.joined(),
                                 privateKeyPEM: try key.pkcs8PEM(), caPEM: caPEM,
                                 serialNumber: leaf.serialNumberHex, notBefore: leaf.notBefore, notAfter: leaf.notAfter,
                                 renewalTime: renewalTime(notBefore: leaf.notBefore, notAfter: leaf.notAfter, spec: spec, policy: policy),
                                 cutShortByIssuer: notAfter < now + duration)
    }

    /// notAfter minus spec.renewBefore (a third of spec.duration by default). A leaf cut
    /// short by its issuer is renewed a third of its own life before its end at the latest:
    /// renewBefore measured against the spec's duration could leave it none, and it would
    /// be issued again at every pass.
    public static func renewalTime(notBefore: Int64, notAfter: Int64, spec: PkiSpec, policy: Policy) -> Int64 {
        let duration = Int64(spec.duration.flatMap(parseGoDuration) ?? policy.defaultDuration)
        let lifetime = notAfter - notBefore
        var renewBefore = Int64(spec.renewBefore.flatMap(parseGoDuration) ?? Double(duration) / 3)
        if lifetime + CertificateCheck.durationTolerance < duration + backdate { renewBefore = min(renewBefore, lifetime / 3) }
        return notAfter - renewBefore
    }

    /// spec.usages when unset.
    public static let defaultUsages = ["server auth"]

    /// The extended key usages spec.usages asks for.
    public static func extendedKeyUsages(_ usages: [String]) -> [CertificateTemplate.Usage] {
        var extended: [CertificateTemplate.Usage] = []
        if usages.contains("server auth") { extended.append(.serverAuth) }
        if usages.contains("client auth") { extended.append(.clientAuth) }
        return extended
    }

    /// spec.privateKey as a key type: ECDSA P-256 when unset, RSA at the policy's default size.
    public static func keyAlgorithm(_ spec: PrivateKeySpec?, policy: Policy) -> PrivateKey.Algorithm {
        switch spec?.algorithm ?? "ECDSA" {
        case "RSA": return .rsa(bits: spec?.size ?? policy.defaultRSASize)
        case "Ed25519": return .ed25519
        default: return spec?.size == 384 ? .ecdsaP384 : .ecdsaP256
        }
    }
}

extension Issuance {
    /// spec.subject as the certificate writes it.
    public static func subjectAttributes(_ subject: SubjectSpec?) -> SubjectAttributes {
        SubjectAttributes(countries: subject?.countries ?? [], provinces: subject?.provinces ?? [], localities: subject?.localities ?? [],
                          organizations: subject?.organizations ?? [], organizationalUnits: subject?.organizationalUnits ?? [])
    }
}
