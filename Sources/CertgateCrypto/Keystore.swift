import COpenSSL

/// The key and certificates in the forms applications other than Go and OpenSSL want:
/// PKCS#12 keystores and truststores for Java, a DER key.
public enum Keystore {
    /// How a PKCS#12 file is encrypted.
    public enum Profile: Sendable, Equatable {
        /// AES-256-CBC with PBKDF2 and a SHA-256 MAC: what OpenSSL 3, Java 8u301+ and current
        /// .NET read.
        case modern
        /// 3DES for the key, RC2-40 for the certificates, a SHA-1 MAC: only for old Java.
        case legacyRC2
    }

    /// `keystore.p12`: the key, the leaf and the rest of the chain.
    public static func pkcs12(key: PrivateKey, chain: [Certificate], password: String, profile: Profile) throws -> [UInt8] {
        guard let leaf = chain.first else { throw OpenSSLError("making a PKCS#12 keystore", details: ["no certificate"]) }
        try loadLegacyProvider(for: profile)
        ERR_clear_error()
        let p12 = withPointers(Array(chain.dropFirst())) { pointers, count in
            leaf.withUnsafePointer { leafPointer in
                key.withUnsafePointer { keyPointer in
                    certgate_pkcs12_keystore(password, keyPointer, leafPointer, pointers, Int32(count), profile == .legacyRC2 ? 1 : 0)
                }
            }
        }
        return try encoded(p12, "making a PKCS#12 keystore")
    }

    /// `truststore.p12`: certificates a Java client trusts (Oracle's trusted-key-usage
    /// attribute on each, as `keytool -importcert` writes them).
    public static func pkcs12TrustStore(_ certificates: [Certificate], password: String, profile: Profile) throws -> [UInt8] {
        try loadLegacyProvider(for: profile)
        ERR_clear_error()
        let p12 = withPointers(certificates) { pointers, count in
            certgate_pkcs12_truststore(password, pointers, Int32(count), profile == .legacyRC2 ? 1 : 0)
        }
        return try encoded(p12, "making a PKCS#12 truststore")
    }

    /// The leaf certificate of a keystore and the profile it was written with, or nil when
    /// `password` does not open it or it does not parse.
    public static func open(pkcs12 bytes: [UInt8], password: String) -> (leaf: Certificate?, profile: Profile)? {
        _ = legacyProvider  // a legacy keystore opens only with RC2 at hand
        ERR_clear_error()
        defer { ERR_clear_error() }
        let parsed: OpaquePointer?? = try? withMemoryBIO(bytes) { bio in d2i_PKCS12_bio(bio, nil) }
        guard let p12 = parsed ?? nil else { return nil }
        defer { PKCS12_free(p12) }
        guard PKCS12_verify_mac(p12, password, -1) == 1 else { return nil }
        let profile: Profile = certgate_pkcs12_mac_nid(p12) == NID_sha1 ? .legacyRC2 : .modern
        return (certgate_pkcs12_leaf(p12, password).map { Certificate(takingOwnership: $0) }, profile)
    }

    /// `key.der`: the key as unencrypted PKCS#8 DER.
    public static func der(_ key: PrivateKey) throws -> [UInt8] {
        ERR_clear_error()
        return try writingMemoryBIO("writing the private key as PKCS#8 DER") { bio in
            key.withUnsafePointer { i2d_PKCS8PrivateKey_bio(bio, $0, nil, nil, 0, nil, nil) }
        }
    }

    private static func encoded(_ p12: OpaquePointer?, _ operation: String) throws -> [UInt8] {
        guard let p12 else { throw OpenSSLError.drain(operation) }
        defer { PKCS12_free(p12) }
        return try writingMemoryBIO(operation) { bio in i2d_PKCS12_bio(bio, p12) }
    }

    /// The X509 pointers of `certificates`, alive for the call; a list of one nil when there
    /// are none, so the C side always gets an array.
    private static func withPointers<R>(_ certificates: [Certificate],
                                        _ body: (_ pointers: UnsafeMutablePointer<OpaquePointer?>, _ count: Int) -> R) -> R {
        var pointers: [OpaquePointer?] = certificates.map { $0.withUnsafePointer { $0 } }
        if pointers.isEmpty { pointers = [nil] }
        return withExtendedLifetime(certificates) {
            pointers.withUnsafeMutableBufferPointer { body($0.baseAddress!, certificates.count) }
        }
    }

    /// RC2 lives in OpenSSL 3's legacy provider, loaded once beside the default one.
    private static func loadLegacyProvider(for profile: Profile) throws {
        guard profile == .legacyRC2 else { return }
        guard legacyProvider != nil else {
            throw OpenSSLError("loading OpenSSL's legacy provider for RC2", details: ["the legacy provider (ossl-modules/legacy.so) is not installed"])
        }
    }

    nonisolated(unsafe) private static let legacyProvider: OpaquePointer? = OSSL_PROVIDER_try_load(nil, "legacy", 1)
}
