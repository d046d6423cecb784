import COpenSSL
#if canImport(Glibc)
import Glibc
#endif

/// An X.509 certificate held by OpenSSL.
///
/// `@unchecked Sendable`: never mutated after parsing or signing; X509's reference count
/// is thread-safe.
public final class Certificate: @unchecked Sendable {
    let pointer: OpaquePointer

    /// Adopts an X509 reference; it is freed with this object.
    init(takingOwnership pointer: OpaquePointer) {
        self.pointer = pointer
    }

    deinit { X509_free(pointer) }

    /// Parses every certificate in a PEM bundle, in order (leaf first for a chain file).
    /// Throws when there is none.
    public static func chain(pem: [UInt8]) throws -> [Certificate] {
        ERR_clear_error()
        let chain = try withMemoryBIO(pem) { bio -> [Certificate] in
            var certificates: [Certificate] = []
            while let x509 = PEM_read_bio_X509(bio, nil, nil, nil) {
                certificates.append(Certificate(takingOwnership: x509))
            }
            return certificates
        }
        // The loop ends on "no start line" at the end of the data; any other error is real.
        let leftover = drainErrorQueue(ignoring: { ERR_GET_LIB($0) == ERR_LIB_PEM && ERR_GET_REASON($0) == PEM_R_NO_START_LINE })
        if chain.isEmpty || !leftover.isEmpty {
            throw OpenSSLError("reading PEM certificates", details: leftover.isEmpty ? ["no certificate found"] : leftover)
        }
        return chain
    }

    /// Parses exactly one PEM certificate (the first in the data).
    public convenience init(pem: [UInt8]) throws {
        let first = try Certificate.chain(pem: pem)[0]
        X509_up_ref(first.pointer)
        self.init(takingOwnership: first.pointer)
    }

    /// The certificate as PEM.
    public func pem() throws -> String {
        ERR_clear_error()
        let bytes = try writingMemoryBIO("writing a certificate as PEM") { bio in PEM_write_bio_X509(bio, pointer) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The serial number in upper-case hex, as `openssl x509 -serial` prints it.
    public var serialNumberHex: String {
        guard let bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(pointer), nil) else { return "" }
        defer { BN_free(bn) }
        guard let hex = BN_bn2hex(bn) else { return "" }
        defer { certgate_OPENSSL_free(hex) }
        return String(cString: hex)
    }

    /// Seconds since 1970 of the end of validity.
    public var notAfter: Int64 { Certificate.epochSeconds(X509_get0_notAfter(pointer)) }

    /// Seconds since 1970 of the start of validity.
    public var notBefore: Int64 { Certificate.epochSeconds(X509_get0_notBefore(pointer)) }

    /// The subject's common name, if it has one.
    public var commonName: String? { Certificate.commonName(of: X509_get_subject_name(pointer)) }

    /// The issuer's common name, if it has one.
    public var issuerCommonName: String? { Certificate.commonName(of: X509_get_issuer_name(pointer)) }

    private static func commonName(of name: OpaquePointer?) -> String? {
        guard let name else { return nil }
        var buffer = [CChar](repeating: 0, count: 256)
        let length = X509_NAME_get_text_by_NID(name, NID_commonName, &buffer, Int32(buffer.count))
        guard length >= 0 else { return nil }
        return String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The names of subjectAltName by kind; IP addresses as text ("10.0.0.1", "fd00::1").
    public struct AlternativeNames: Sendable, Equatable {
        public var dnsNames: [String] = []
        public var ipAddresses: [String] = []
        public var uris: [String] = []
        public var emailAddresses: [String] = []
    }

    public var subjectAlternativeNames: AlternativeNames {
        var result = AlternativeNames()
        guard let raw = X509_get_ext_d2i(pointer, NID_subject_alt_name, nil, nil) else { return result }
        let names = OpaquePointer(raw)
        defer { GENERAL_NAMES_free(names) }
        for index in 0..<certgate_sk_GENERAL_NAME_num(names) {
            guard let name = certgate_sk_GENERAL_NAME_value(names, index) else { continue }
            switch name.pointee.type {
            case GEN_DNS:
                result.dnsNames.append(String(decoding: Certificate.bytes(name.pointee.d.dNSName), as: UTF8.self))
            case GEN_IPADD:
                let address = Certificate.bytes(name.pointee.d.iPAddress)
                result.ipAddresses.append(formatIPAddress(address) ?? address.map { String($0) }.joined(separator: "."))
            case GEN_URI:
                result.uris.append(String(decoding: Certificate.bytes(name.pointee.d.uniformResourceIdentifier), as: UTF8.self))
            case GEN_EMAIL:
                result.emailAddresses.append(String(decoding: Certificate.bytes(name.pointee.d.rfc822Name), as: UTF8.self))
            default:
                continue
            }
        }
        return result
    }

    /// The subject's attributes besides its common name, in the order the certificate lists them.
    public var subjectAttributes: SubjectAttributes {
        var result = SubjectAttributes()
        guard let name = X509_get_subject_name(pointer) else { return result }
        for index in 0..<X509_NAME_entry_count(name) {
            guard let entry = X509_NAME_get_entry(name, index), let data = X509_NAME_ENTRY_get_data(entry) else { continue }
            var utf8: UnsafeMutablePointer<UInt8>?
            let length = ASN1_STRING_to_UTF8(&utf8, data)
            guard length >= 0, let utf8 else { continue }
            let value = String(decoding: UnsafeBufferPointer(start: utf8, count: Int(length)), as: UTF8.self)
            certgate_OPENSSL_free(utf8)
            switch OBJ_obj2nid(X509_NAME_ENTRY_get_object(entry)) {
            case NID_countryName: result.countries.append(value)
            case NID_stateOrProvinceName: result.provinces.append(value)
            case NID_localityName: result.localities.append(value)
            case NID_organizationName: result.organizations.append(value)
            case NID_organizationalUnitName: result.organizationalUnits.append(value)
            default: continue
            }
        }
        return result
    }

    /// The extended key usages Certgate issues that this certificate has.
    public var extendedKeyUsages: Set<CertificateTemplate.Usage> {
        let flags = X509_get_extended_key_usage(pointer)
        var usages = Set<CertificateTemplate.Usage>()
        if flags & UInt32(XKU_SSL_SERVER) != 0 { usages.insert(.serverAuth) }
        if flags & UInt32(XKU_SSL_CLIENT) != 0 { usages.insert(.clientAuth) }
        return usages
    }

    /// Whether the key usage extension allows key encipherment.
    public var allowsKeyEncipherment: Bool {
        X509_get_key_usage(pointer) & UInt32(KU_KEY_ENCIPHERMENT) != 0
    }

    /// The subject's public key algorithm and size, as a private key would say it.
    public var keyAlgorithm: PrivateKey.Algorithm? {
        guard let key = X509_get0_pubkey(pointer) else { return nil }
        return PrivateKey.algorithm(of: key)
    }

    private static func bytes(_ string: UnsafeMutablePointer<ASN1_STRING>?) -> [UInt8] {
        guard let string, let data = ASN1_STRING_get0_data(string) else { return [] }
        return Array(UnsafeBufferPointer(start: data, count: Int(ASN1_STRING_length(string))))
    }

    /// Whether basicConstraints says CA:TRUE.
    public var isCertificateAuthority: Bool {
        X509_get_extension_flags(pointer) & UInt32(EXFLAG_CA) != 0
    }

    /// Whether the key may sign certificates: keyUsage absent (any use) or with keyCertSign.
    public var allowsCertificateSigning: Bool {
        X509_get_extension_flags(pointer) & UInt32(EXFLAG_KUSAGE) == 0 || X509_get_key_usage(pointer) & UInt32(KU_KEY_CERT_SIGN) != 0
    }

    /// Whether the certificate names itself as its issuer (a root CA).
    public var isSelfIssued: Bool {
        guard let subject = X509_get_subject_name(pointer), let issuer = X509_get_issuer_name(pointer) else { return false }
        return X509_NAME_cmp(subject, issuer) == 0
    }

    /// Whether `key` is the private half of this certificate's public key.
    public func matches(_ key: PrivateKey) -> Bool {
        ERR_clear_error()
        let result = key.withUnsafePointer { X509_check_private_key(pointer, $0) }
        ERR_clear_error()
        return result == 1
    }

    /// Whether `issuer`'s key signed this certificate (the signature only: validity and
    /// extensions are the verifier's business).
    public func isSigned(by issuer: Certificate) -> Bool {
        ERR_clear_error()
        defer { ERR_clear_error() }
        guard let issuerKey = X509_get0_pubkey(issuer.pointer) else { return false }
        return X509_verify(pointer, issuerKey) == 1
    }

    /// Why this certificate does not chain to one of `roots` through `intermediates` at `time`
    /// (seconds since 1970), in OpenSSL's words as `openssl verify` says them; nil when it does.
    public func verificationFailure(intermediates: [Certificate], roots: [Certificate], at time: Int64) -> String? {
        ERR_clear_error()
        defer { ERR_clear_error() }
        guard let store = X509_STORE_new() else { return "out of memory" }
        defer { X509_STORE_free(store) }
        for root in roots { _ = X509_STORE_add_cert(store, root.pointer) }
        guard let untrusted = certgate_sk_X509_new_null() else { return "out of memory" }
        defer { certgate_sk_X509_free(untrusted) }
        for intermediate in intermediates { _ = certgate_sk_X509_push(untrusted, intermediate.pointer) }
        guard let context = X509_STORE_CTX_new() else { return "out of memory" }
        defer { X509_STORE_CTX_free(context) }
        guard X509_STORE_CTX_init(context, store, pointer, untrusted) == 1 else { return "the verification could not start" }
        X509_STORE_CTX_set_time(context, 0, time_t(time))
        // The certificates stay alive (and the pointers valid) until the context is freed.
        return withExtendedLifetime((roots, intermediates)) {
            X509_verify_cert(context) == 1 ? nil : String(cString: X509_verify_cert_error_string(Int(X509_STORE_CTX_get_error(context))))
        }
    }

    /// Scoped access to the X509 for other OpenSSL wrappers in this project.
    public func withUnsafePointer<R>(_ body: (OpaquePointer) throws -> R) rethrows -> R {
        try body(pointer)
    }

    private static func epochSeconds(_ time: UnsafePointer<ASN1_TIME>?) -> Int64 {
        guard let time else { return 0 }
        var parts = tm()
        guard ASN1_TIME_to_tm(time, &parts) == 1 else { return 0 }
        return Int64(timegm(&parts))
    }
}
