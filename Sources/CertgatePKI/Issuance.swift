import CertgateCrypto

/// A certificate issued for a Pki, ready for a kubernetes.io/tls Secret.
public struct IssuedCertificate: Sendable {
    /// tls.crt: the leaf, then the issuing CA.
    public let certificateChainPEM: String
    /// tls.key: PKCS#8.
    public let privateKeyPEM: String
    /// ca.crt
    public let caPEM: String
    public let serialNumber: String
    /// Seconds since 1970.
    public let notBefore: Int64
    public let notAfter: Int64
    /// When the reconciler renews it: notAfter minus renewBefore (a third of the duration by default).
    public let renewalTime: Int64
}

/// A CA's signing material, from its Secret's tls.crt and tls.key.
public struct CertificateAuthority: Sendable {
    public let certificate: Certificate
    public let key: PrivateKey

    public init(certificate: Certificate, key: PrivateKey) {
        self.certificate = certificate
        self.key = key
    }
}

/// Turns a Pki's spec into a certificate, with OpenSSL (CertgateCrypto). The spec must
/// have passed `judge`; what the spec leaves out takes the policy's defaults.
public enum Issuance {
    /// The clock-skew allowance: certificates start five minutes before they are issued.
    public static let backdate: Int64 = 300

    public static func issue(_ spec: PkiSpec, policy: Policy, by authority: CertificateAuthority, now: Int64,
                             reusing existingKey: PrivateKey? = nil) throws -> IssuedCertificate {
        let duration = Int64(spec.duration.flatMap(parseGoDuration) ?? policy.defaultDuration)
        let renewBefore = Int64(spec.renewBefore.flatMap(parseGoDuration) ?? Double(duration) / 3)
        let algorithm = keyAlgorithm(spec.privateKey)
        let key = try existingKey.flatMap { $0.algorithm == algorithm ? $0 : nil } ?? PrivateKey.generate(algorithm)
        let usages = spec.usages ?? defaultUsages
        let template = CertificateTemplate(
            commonName: spec.commonName, dnsNames: spec.dnsNames ?? [], ipAddresses: spec.ipAddresses ?? [],
            extendedKeyUsages: extendedKeyUsages(usages), keyUsages: usages.contains("key encipherment") ? [.keyEncipherment] : [],
            notBefore: now - backdate, notAfter: now + duration)
        let leaf = try CertificateSigner.sign(template, subjectKey: key, issuer: (authority.certificate, authority.key))
        let caPEM = try authority.certificate.pem()
        return IssuedCertificate(certificateChainPEM: try leaf.pem() + caPEM, privateKeyPEM: try key.pkcs8PEM(), caPEM: caPEM,
                                 serialNumber: leaf.serialNumberHex, notBefore: leaf.notBefore, notAfter: leaf.notAfter,
                                 renewalTime: leaf.notAfter - renewBefore)
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

    /// spec.privateKey as a key type: ECDSA P-256 when unset.
    public static func keyAlgorithm(_ spec: PrivateKeySpec?) -> PrivateKey.Algorithm {
        switch spec?.algorithm ?? "ECDSA" {
        case "RSA": return .rsa(bits: spec?.size ?? 2048)
        case "Ed25519": return .ed25519
        default: return spec?.size == 384 ? .ecdsaP384 : .ecdsaP256
        }
    }
}
