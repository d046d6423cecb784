import COpenSSL
#if canImport(Glibc)
import Glibc
#endif

/// What a new certificate should say. The signer fills in serial, issuer and key identifiers.
public struct CertificateTemplate: Sendable {
    public enum Usage: String, Sendable, CaseIterable {
        case serverAuth, clientAuth
    }

    /// keyUsage bits a leaf may ask for beyond digitalSignature, which TLS always needs.
    public enum KeyUsage: String, Sendable, CaseIterable {
        case keyEncipherment
    }

    public var commonName: String?
    public var dnsNames: [String]
    public var ipAddresses: [String]
    public var uris: [String] = []
    public var emailAddresses: [String] = []
    /// Subject attributes besides the common name, written in X.500 order (C, ST, L, O, OU).
    public var subject = SubjectAttributes()
    /// A CA certificate (basicConstraints CA:TRUE, keyCertSign) rather than a leaf.
    public var isCertificateAuthority: Bool
    public var extendedKeyUsages: [Usage]
    /// Extra keyUsage bits; keyEncipherment is only written for RSA keys, the only ones that use it.
    public var keyUsages: [KeyUsage]
    /// Validity start and end, in seconds since 1970.
    public var notBefore: Int64
    public var notAfter: Int64

    public init(commonName: String?, dnsNames: [String] = [], ipAddresses: [String] = [],
                isCertificateAuthority: Bool = false, extendedKeyUsages: [Usage] = [.serverAuth],
                keyUsages: [KeyUsage] = [.keyEncipherment], notBefore: Int64, notAfter: Int64) {
        self.commonName = commonName
        self.dnsNames = dnsNames
        self.ipAddresses = ipAddresses
        self.isCertificateAuthority = isCertificateAuthority
        self.extendedKeyUsages = extendedKeyUsages
        self.keyUsages = keyUsages
        self.notBefore = notBefore
        self.notAfter = notAfter
    }
}

/// Distinguished-name attributes of a subject besides its common name.
public struct SubjectAttributes: Sendable, Equatable {
    public var countries: [String] = []
    public var provinces: [String] = []
    public var localities: [String] = []
    public var organizations: [String] = []
    public var organizationalUnits: [String] = []

    public init(countries: [String] = [], provinces: [String] = [], localities: [String] = [], organizations: [String] = [],
                organizationalUnits: [String] = []) {
        self.countries = countries
        self.provinces = provinces
        self.localities = localities
        self.organizations = organizations
        self.organizationalUnits = organizationalUnits
    }

    /// (OpenSSL short name, values), in the order a DN lists them.
    var entries: [(String, [String])] {
        [("C", countries), ("ST", provinces), ("L", localities), ("O", organizations), ("OU", organizationalUnits)]
    }
}

/// Signs certificates with OpenSSL: self-signed CAs and leaves signed by a CA.
public enum CertificateSigner {
    /// Signs `template` for `subjectKey`. With no `issuer` the certificate is self-signed
    /// by `subjectKey`.
    public static func sign(_ template: CertificateTemplate, subjectKey: PrivateKey,
                            issuer: (certificate: Certificate, key: PrivateKey)? = nil) throws -> Certificate {
        try validateNames(template)
        ERR_clear_error()
        guard let x509 = X509_new() else { throw OpenSSLError.drain("allocating a certificate") }
        let certificate = Certificate(takingOwnership: x509)

        guard X509_set_version(x509, 2) == 1 else { throw OpenSSLError.drain("setting the certificate version") }
        try setRandomSerial(x509)
        guard ASN1_TIME_set(X509_getm_notBefore(x509), time_t(template.notBefore)) != nil,
              ASN1_TIME_set(X509_getm_notAfter(x509), time_t(template.notAfter)) != nil else {
            throw OpenSSLError.drain("setting the validity period")
        }
        guard subjectKey.withUnsafePointer({ X509_set_pubkey(x509, $0) }) == 1 else {
            throw OpenSSLError.drain("setting the public key")
        }
        let subject = X509_get_subject_name(x509)
        for (attribute, values) in template.subject.entries {
            for value in values where X509_NAME_add_entry_by_txt(subject, attribute, MBSTRING_UTF8, value, -1, -1, 0) != 1 {
                throw OpenSSLError.drain("setting the subject's \(attribute) \"\(value)\"")
            }
        }
        if let commonName = template.commonName {
            guard X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8, commonName, -1, -1, 0) == 1 else {
                throw OpenSSLError.drain("setting the common name \"\(commonName)\"")
            }
        }
        let issuerCertificate = issuer?.certificate.pointer ?? x509
        guard X509_set_issuer_name(x509, X509_get_subject_name(issuerCertificate)) == 1 else {
            throw OpenSSLError.drain("setting the issuer name")
        }

        var context = X509V3_CTX()
        certgate_X509V3_set_ctx_nodb(&context)
        X509V3_set_ctx(&context, issuerCertificate, x509, nil, nil, 0)
        let signingKey = issuer?.key ?? subjectKey
        for (nid, value) in extensions(template, keyAlgorithm: subjectKey.algorithm, selfSigned: issuer == nil) {
            guard let ext = X509V3_EXT_conf_nid(nil, &context, nid, value) else {
                throw OpenSSLError.drain("building the extension \(String(cString: OBJ_nid2sn(nid))) = \(value)")
            }
            defer { X509_EXTENSION_free(ext) }
            guard X509_add_ext(x509, ext, -1) == 1 else { throw OpenSSLError.drain("adding an extension") }
        }
        try addAlternativeNames(template, to: x509)

        // Ed25519 signs without a separate digest; every other key type uses SHA-256 or better.
        let digest: OpaquePointer? = switch signingKey.algorithm {
        case .ed25519: nil
        case .ecdsaP384: EVP_sha384()
        default: EVP_sha256()
        }
        guard signingKey.withUnsafePointer({ X509_sign(x509, $0, digest) }) > 0 else {
            throw OpenSSLError.drain("signing the certificate")
        }
        return certificate
    }

    private static func extensions(_ template: CertificateTemplate, keyAlgorithm: PrivateKey.Algorithm?,
                                   selfSigned: Bool) -> [(Int32, String)] {
        var result: [(Int32, String)] = []
        if template.isCertificateAuthority {
            result.append((NID_basic_constraints, "critical,CA:TRUE"))
            result.append((NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature"))
        } else {
            result.append((NID_basic_constraints, "critical,CA:FALSE"))
            // Key encipherment only means something for RSA key transport.
            if case .rsa = keyAlgorithm, template.keyUsages.contains(.keyEncipherment) {
                result.append((NID_key_usage, "critical,digitalSignature,keyEncipherment"))
            } else {
                result.append((NID_key_usage, "critical,digitalSignature"))
            }
            if !template.extendedKeyUsages.isEmpty {
                result.append((NID_ext_key_usage, template.extendedKeyUsages.map(\.rawValue).joined(separator: ",")))
            }
        }
        result.append((NID_subject_key_identifier, "hash"))
        if !selfSigned {
            // The issuer's subjectKeyIdentifier; from a CA without one (RFC 5280 wants one, many
            // home-made CAs lack it), its name and serial, which chain building matches too.
            result.append((NID_authority_key_identifier, "keyid,issuer"))
        }
        return result
    }

    /// subjectAltName, built name by name rather than in OpenSSL's configuration syntax, where
    /// the ',' and ':' that URIs hold would split them.
    private static func addAlternativeNames(_ template: CertificateTemplate, to x509: OpaquePointer) throws {
        var names: [(Int32, [UInt8])] = template.dnsNames.map { (GEN_DNS, Array($0.utf8)) }
        names += template.ipAddresses.compactMap { parseIPAddress($0).map { (GEN_IPADD, $0) } }
        names += template.uris.map { (GEN_URI, Array($0.utf8)) }
        names += template.emailAddresses.map { (GEN_EMAIL, Array($0.utf8)) }
        guard !names.isEmpty else { return }
        guard let list = certgate_general_names_new() else { throw OpenSSLError.drain("allocating subjectAltName") }
        defer { certgate_general_names_free(list) }
        for (type, bytes) in names where certgate_general_names_add(list, type, bytes, Int32(bytes.count)) != 1 {
            throw OpenSSLError.drain("adding \(String(decoding: bytes, as: UTF8.self)) to subjectAltName")
        }
        guard X509_add1_ext_i2d(x509, NID_subject_alt_name, UnsafeMutableRawPointer(list), 0, UInt(X509V3_ADD_DEFAULT)) == 1 else {
            throw OpenSSLError.drain("adding subjectAltName")
        }
    }

    /// Names reach the certificate as they are: a DNS name holds only what one can, an IP
    /// address is a literal, and no name is empty or holds a control character or a space.
    private static func validateNames(_ template: CertificateTemplate) throws {
        for name in template.uris + template.emailAddresses where name.isEmpty || !name.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) {
            throw OpenSSLError("building the certificate", details: ["\"\(name)\" is not a URI or an email address"])
        }
        for name in template.dnsNames where name.isEmpty || !name.utf8.allSatisfy({ isDNSByte($0) }) {
            throw OpenSSLError("building the certificate", details: ["\"\(name)\" is not a DNS name"])
        }
        for address in template.ipAddresses where !isIPAddressLiteral(address) {
            throw OpenSSLError("building the certificate", details: ["\"\(address)\" is not an IP address"])
        }
    }

    private static func isDNSByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "*"):
            return true
        default:
            return false
        }
    }

    /// A random positive serial number of 16 octets (RFC 5280 allows up to 20).
    private static func setRandomSerial(_ x509: OpaquePointer) throws {
        var bytes = [UInt8](repeating: 0, count: 16)
        guard RAND_bytes(&bytes, Int32(bytes.count)) == 1 else { throw OpenSSLError.drain("drawing a random serial number") }
        bytes[0] &= 0x7F  // positive: the top bit of a DER INTEGER is its sign
        guard let bn = BN_bin2bn(bytes, Int32(bytes.count), nil) else { throw OpenSSLError.drain("building the serial number") }
        defer { BN_free(bn) }
        guard let serial = BN_to_ASN1_INTEGER(bn, nil) else { throw OpenSSLError.drain("encoding the serial number") }
        defer { ASN1_INTEGER_free(serial) }
        guard X509_set_serialNumber(x509, serial) == 1 else { throw OpenSSLError.drain("setting the serial number") }
    }
}

extension CertificateSigner {
    /// A new self-signed CA with an ECDSA P-256 key, valid from `notBefore` to `notAfter`
    /// (seconds since 1970).
    public static func makeAuthority(commonName: String, notBefore: Int64,
                                     notAfter: Int64) throws -> (certificate: Certificate, key: PrivateKey) {
        let key = try PrivateKey.generate(.ecdsaP256)
        let certificate = try sign(CertificateTemplate(commonName: commonName, isCertificateAuthority: true,
                                                       notBefore: notBefore, notAfter: notAfter),
                                   subjectKey: key)
        return (certificate, key)
    }

    /// A new server-auth certificate with an ECDSA P-256 key for `hosts` (DNS names and IP
    /// literals, the first one also the common name), signed by `issuer`.
    public static func makeServingCertificate(hosts: [String], notBefore: Int64, notAfter: Int64,
                                              issuer: (certificate: Certificate, key: PrivateKey)) throws -> (certificate: Certificate, key: PrivateKey) {
        let key = try PrivateKey.generate(.ecdsaP256)
        let certificate = try sign(CertificateTemplate(commonName: hosts.first ?? "certgate",
                                                       dnsNames: hosts.filter { !isIPAddressLiteral($0) },
                                                       ipAddresses: hosts.filter(isIPAddressLiteral),
                                                       extendedKeyUsages: [.serverAuth],
                                                       notBefore: notBefore, notAfter: notAfter),
                                   subjectKey: key, issuer: issuer)
        return (certificate, key)
    }
}

/// The bytes of an IPv4 (4) or IPv6 (16) literal, or nil.
public func parseIPAddress(_ text: String) -> [UInt8]? {
    // inet_pton reads a C string: "10.0.0.1\0junk" would pass as 10.0.0.1, and OpenSSL's
    // extension text would then end at the NUL and drop every name after it.
    guard !text.utf8.contains(0) else { return nil }
    var v4 = in_addr()
    if inet_pton(AF_INET, text, &v4) == 1 {
        return withUnsafeBytes(of: &v4) { Array($0) }
    }
    var v6 = in6_addr()
    if inet_pton(AF_INET6, text, &v6) == 1 {
        return withUnsafeBytes(of: &v6) { Array($0) }
    }
    return nil
}

/// The text form of a 4- or 16-byte address (inet_ntop's: "10.0.0.1", "fd00::1"), nil for
/// any other length.
public func formatIPAddress(_ bytes: [UInt8]) -> String? {
    let family: Int32
    switch bytes.count {
    case 4: family = AF_INET
    case 16: family = AF_INET6
    default: return nil
    }
    var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
    let written = bytes.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &text, socklen_t(text.count)) }
    return written == nil ? nil : String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Whether `text` is an IPv4 or IPv6 address literal.
public func isIPAddressLiteral(_ text: String) -> Bool {
    parseIPAddress(text) != nil
}
