import COpenSSL

/// A private key held by OpenSSL (EVP_PKEY).
///
/// `@unchecked Sendable`: the key is never mutated after creation and EVP_PKEY's
/// reference count is thread-safe, so sharing it across threads is safe.
public final class PrivateKey: @unchecked Sendable {
    /// The key types Certgate makes.
    public enum Algorithm: Sendable, Equatable, CustomStringConvertible {
        case ecdsaP256, ecdsaP384
        case rsa(bits: Int)
        case ed25519

        public var description: String {
            switch self {
            case .ecdsaP256: "ECDSA P-256"
            case .ecdsaP384: "ECDSA P-384"
            case .rsa(let bits): "RSA \(bits)"
            case .ed25519: "Ed25519"
            }
        }
    }

    let pointer: OpaquePointer

    /// Adopts an EVP_PKEY reference; it is freed with this object.
    init(takingOwnership pointer: OpaquePointer) {
        self.pointer = pointer
    }

    deinit { EVP_PKEY_free(pointer) }

    /// Generates a new key.
    public static func generate(_ algorithm: Algorithm) throws -> PrivateKey {
        let name: String
        switch algorithm {
        case .ecdsaP256, .ecdsaP384: name = "EC"
        case .rsa: name = "RSA"
        case .ed25519: name = "ED25519"
        }
        ERR_clear_error()
        guard let context = EVP_PKEY_CTX_new_from_name(nil, name, nil) else {
            throw OpenSSLError.drain("creating a \(algorithm) key generator")
        }
        defer { EVP_PKEY_CTX_free(context) }
        guard EVP_PKEY_keygen_init(context) == 1 else { throw OpenSSLError.drain("starting \(algorithm) key generation") }
        switch algorithm {
        case .ecdsaP256:
            guard EVP_PKEY_CTX_set_group_name(context, "P-256") == 1 else { throw OpenSSLError.drain("choosing curve P-256") }
        case .ecdsaP384:
            guard EVP_PKEY_CTX_set_group_name(context, "P-384") == 1 else { throw OpenSSLError.drain("choosing curve P-384") }
        case .rsa(let bits):
            guard EVP_PKEY_CTX_set_rsa_keygen_bits(context, Int32(bits)) == 1 else { throw OpenSSLError.drain("choosing RSA size \(bits)") }
        case .ed25519:
            break
        }
        var key: OpaquePointer?
        guard EVP_PKEY_generate(context, &key) == 1, let key else { throw OpenSSLError.drain("generating a \(algorithm) key") }
        return PrivateKey(takingOwnership: key)
    }

    /// Parses a PEM private key (PKCS#8, or the older "RSA PRIVATE KEY" / "EC PRIVATE KEY" forms).
    public convenience init(pem: [UInt8]) throws {
        ERR_clear_error()
        let key = try withMemoryBIO(pem) { bio in PEM_read_bio_PrivateKey(bio, nil, nil, nil) }
        guard let key else { throw OpenSSLError.drain("reading a PEM private key") }
        self.init(takingOwnership: key)
    }

    /// The key as unencrypted PKCS#8 PEM ("-----BEGIN PRIVATE KEY-----").
    public func pkcs8PEM() throws -> String {
        ERR_clear_error()
        let bytes = try writingMemoryBIO("writing the private key as PKCS#8 PEM") { bio in
            PEM_write_bio_PKCS8PrivateKey(bio, pointer, nil, nil, 0, nil, nil)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// What kind of key this is.
    public var algorithm: Algorithm? { PrivateKey.algorithm(of: pointer) }

    static func algorithm(of pointer: OpaquePointer) -> Algorithm? {
        switch EVP_PKEY_get_base_id(pointer) {
        case EVP_PKEY_RSA: return .rsa(bits: Int(EVP_PKEY_get_bits(pointer)))
        case EVP_PKEY_ED25519: return .ed25519
        case EVP_PKEY_EC: return EVP_PKEY_get_bits(pointer) == 384 ? .ecdsaP384 : .ecdsaP256
        default: return nil
        }
    }

    /// Scoped access to the EVP_PKEY for other OpenSSL wrappers in this project.
    public func withUnsafePointer<R>(_ body: (OpaquePointer) throws -> R) rethrows -> R {
        try body(pointer)
    }
}
