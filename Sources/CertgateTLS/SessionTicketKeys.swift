import CertgateSystem
import COpenSSL
import CertgateLocking
import CertgateNet

/// The keys that seal stateless session tickets, so a returning client resumes (no
/// certificate, no signature) while the server keeps no state per client.
///
/// OpenSSL's default is one random key per SSL_CTX, never rotated: tickets stayed valid as
/// long as the process ran, and every reload of the serving certificate (a new SSL_CTX)
/// made every client's ticket worthless at once. Here one ring of keys belongs to a server
/// and outlives its contexts, and its keys rotate: a new key seals tickets every
/// `rotationInterval`, and the previous `previousKeys` still open them (every ticket opened
/// is answered with a fresh one). An old key leaves the ring, so a leaked key or memory dump
/// exposes at most `(previousKeys + 1) × rotationInterval` of sessions, as Go's crypto/tls
/// and Mozilla's guidance have it.
public final class SessionTicketKeys: Sendable {
    struct Key {
        /// Sent in the clear in each ticket, to find the key again.
        let name: [UInt8]
        let cipherKey: [UInt8]
        let hmacKey: [UInt8]
        let created: Double
    }

    public let rotationInterval: Double
    public let previousKeys: Int
    private let clock: @Sendable () -> Double
    /// Newest first.
    private let ring = Locked<[Key]>([])

    /// - Parameter clock: seconds on a monotonic clock (replaceable in tests).
    public init(rotationInterval: Double = 3600, previousKeys: Int = 1,
                clock: @escaping @Sendable () -> Double = { Double(monotonicNanoseconds()) / 1e9 }) {
        self.rotationInterval = rotationInterval
        self.previousKeys = max(0, previousKeys)
        self.clock = clock
    }

    /// The key that seals new tickets, rotated first if its time is up.
    func sealingKey() -> Key {
        let now = clock()
        return ring.withLock { ring in
            rotateIfDue(&ring, now: now)
            return ring[0]
        }
    }

    /// The key named `name`, if still in the ring.
    func openingKey(named name: UnsafeBufferPointer<UInt8>) -> Key? {
        let now = clock()
        return ring.withLock { ring in
            rotateIfDue(&ring, now: now)
            return ring.first { $0.name.elementsEqual(name) }
        }
    }

    /// How many keys can open a ticket now (for tests and metrics).
    public var keyCount: Int { ring.withLock { $0.count } }

    private func rotateIfDue(_ ring: inout [Key], now: Double) {
        if let newest = ring.first, now - newest.created < rotationInterval { return }
        ring.insert(Key(name: randomBytes(16), cipherKey: randomBytes(32), hmacKey: randomBytes(32), created: now), at: 0)
        // Keys older than the window go even when no handshake rotated in between.
        ring = Array(ring.prefix(previousKeys + 1)).filter { now - $0.created < rotationInterval * Double(previousKeys + 1) }
    }

    private func randomBytes(_ count: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        // A failing CSPRNG leaves no safe key to make; better to stop than to seal with zeros.
        precondition(RAND_bytes(&bytes, Int32(count)) == 1, "the OpenSSL random generator failed to make a session ticket key")
        return bytes
    }

    /// Installs the ring as `context`'s ticket key callback. The context must keep `self`
    /// alive (TLSContext holds it) as long as OpenSSL may call back.
    func install(on context: OpaquePointer) {
        SSL_CTX_set_ex_data(context, SessionTicketKeys.exDataIndex, Unmanaged.passUnretained(self).toOpaque())
        _ = SSL_CTX_set_tlsext_ticket_key_evp_cb(context, sealOrOpenTicket)
    }

    static let exDataIndex = certgate_SSL_CTX_get_ex_new_index()
    // Fetched once: a cipher fetched per ticket would look it up in the provider each time.
    nonisolated(unsafe) static let cipher = EVP_CIPHER_fetch(nil, "AES-256-CBC", nil)
}

/// OpenSSL's ticket key callback (see SSL_CTX_set_tlsext_ticket_key_evp_cb(3)): seals a new
/// ticket with the current key (`encrypt` 1), or finds the key a client's ticket names
/// (`encrypt` 0). Returns 1 to use the key, 2 to use it and issue a fresh ticket, 0 for
/// "unknown key, do a full handshake", -1 on error.
///
/// An opened ticket is always answered with a fresh one (2). With 1, OpenSSL sends no
/// ticket on a resumed TLS 1.3 connection, and clients use a TLS 1.3 ticket once (RFC 8446
/// C.4): wrk, like OpenSSL's own clients, then made a full handshake every other
/// connection. Sealing a ticket costs a few microseconds; a full handshake about a hundred.
private func sealOrOpenTicket(
    _ ssl: OpaquePointer?, _ keyName: UnsafeMutablePointer<UInt8>?, _ iv: UnsafeMutablePointer<UInt8>?,
    _ cipherContext: OpaquePointer?, _ macContext: OpaquePointer?, _ encrypt: Int32
) -> Int32 {
    guard let ssl, let keyName, let iv, let cipherContext, let macContext, let cipher = SessionTicketKeys.cipher,
          let context = SSL_get_SSL_CTX(ssl), let owner = SSL_CTX_get_ex_data(context, SessionTicketKeys.exDataIndex) else { return -1 }
    let keys = Unmanaged<SessionTicketKeys>.fromOpaque(owner).takeUnretainedValue()
    let ivLength = Int(EVP_CIPHER_get_iv_length(cipher))
    if encrypt == 1 {
        let key = keys.sealingKey()
        guard RAND_bytes(iv, Int32(ivLength)) == 1 else { return -1 }
        key.name.withUnsafeBufferPointer { keyName.update(from: $0.baseAddress!, count: 16) }
        guard EVP_EncryptInit_ex(cipherContext, cipher, nil, key.cipherKey, iv) == 1,
              certgate_ticket_hmac_init(macContext, key.hmacKey, key.hmacKey.count) == 1 else { return -1 }
        return 1
    }
    guard let key = keys.openingKey(named: UnsafeBufferPointer(start: keyName, count: 16)) else { return 0 }
    guard certgate_ticket_hmac_init(macContext, key.hmacKey, key.hmacKey.count) == 1,
          EVP_DecryptInit_ex(cipherContext, cipher, nil, key.cipherKey, iv) == 1 else { return -1 }
    return 2
}
