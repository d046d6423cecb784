import CertgateCrypto

/// The Secret data keys spec.keystores asks for, derived from tls.key, tls.crt and ca.crt.
public enum KeystoreOutputs {
    /// The keys that `current` lacks or holds stale, with what they must hold. A PKCS#12
    /// file is made again only when it does not open with `password`, holds another
    /// certificate, or was written with another profile: its salt and IVs are random, so
    /// writing it on every pass would change the Secret every time.
    public static func changes(_ keystores: KeystoresSpec?, keyPEM: [UInt8], chainPEM: [UInt8], caPEM: [UInt8],
                               current: (String) -> [UInt8]?, password: String?) throws -> [String: [UInt8]] {
        guard let keystores else { return [:] }
        var changes: [String: [UInt8]] = [:]
        if keystores.combinedPEM != nil {
            var combined = keyPEM
            if combined.last != UInt8(ascii: "\n") { combined.append(UInt8(ascii: "\n")) }
            combined += chainPEM
            if current(KeystoresSpec.combinedPEMKey) != combined { changes[KeystoresSpec.combinedPEMKey] = combined }
        }
        let key = try PrivateKey(pem: keyPEM)
        if keystores.der != nil {
            let der = try Keystore.der(key)
            if current(KeystoresSpec.derKey) != der { changes[KeystoresSpec.derKey] = der }
        }
        if let pkcs12 = keystores.pkcs12, let password {
            let profile: Keystore.Profile = pkcs12.profile == "LegacyRC2" ? .legacyRC2 : .modern
            let chain = try Certificate.chain(pem: chainPEM)
            let opened = current(KeystoresSpec.keystoreKey).flatMap { Keystore.open(pkcs12: $0, password: password) }
            let trustOpens = current(KeystoresSpec.truststoreKey).flatMap { Keystore.open(pkcs12: $0, password: password) }
            let keystoreCurrent = opened?.profile == profile && opened?.leaf?.serialNumberHex == chain.first?.serialNumberHex
            if !keystoreCurrent || trustOpens?.profile != profile {
                changes[KeystoresSpec.keystoreKey] = try Keystore.pkcs12(key: key, chain: chain, password: password, profile: profile)
                changes[KeystoresSpec.truststoreKey] = try Keystore.pkcs12TrustStore(try Certificate.chain(pem: caPEM), password: password,
                                                                                      profile: profile)
            }
        }
        return changes
    }
}
