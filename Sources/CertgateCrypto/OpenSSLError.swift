import COpenSSL

/// A failed OpenSSL call: what Certgate was doing and the text of OpenSSL's error queue.
public struct OpenSSLError: Error, CustomStringConvertible, Sendable {
    /// What was attempted, in Certgate's words ("loading the private key from tls.key").
    public let operation: String
    /// OpenSSL's error queue, oldest first ("error:0480006C:PEM routines::no start line").
    public let details: [String]

    public init(_ operation: String, details: [String]) {
        self.operation = operation
        self.details = details
    }

    /// Drains this thread's OpenSSL error queue into an error about `operation`.
    public static func drain(_ operation: String) -> OpenSSLError {
        OpenSSLError(operation, details: drainErrorQueue())
    }

    public var description: String {
        details.isEmpty ? "\(operation) failed" : "\(operation) failed: \(details.joined(separator: "; "))"
    }
}

/// Empties this thread's OpenSSL error queue and returns its entries as text, leaving out
/// those `isExpected` accepts (by their packed error code).
public func drainErrorQueue(ignoring isExpected: (UInt) -> Bool = { _ in false }) -> [String] {
    var entries: [String] = []
    var buffer = [CChar](repeating: 0, count: 256)
    while true {
        let code = ERR_get_error()
        if code == 0 { break }
        if isExpected(code) { continue }
        ERR_error_string_n(code, &buffer, buffer.count)
        entries.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }
    return entries
}

/// Reads everything written to a memory BIO.
func readMemoryBIO(_ bio: OpaquePointer) -> [UInt8] {
    var data: UnsafeMutablePointer<CChar>?
    let length = certgate_BIO_get_mem_data(bio, &data)
    guard length > 0, let data else { return [] }
    return Array(UnsafeRawBufferPointer(start: data, count: length))
}

/// Calls `body` with a read-only memory BIO over `bytes`, freed afterwards.
func withMemoryBIO<R>(_ bytes: [UInt8], _ body: (OpaquePointer) throws -> R) throws -> R {
    try bytes.withUnsafeBytes { raw in
        guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(raw.count)) else {
            throw OpenSSLError.drain("allocating a memory BIO")
        }
        defer { BIO_free(bio) }
        return try body(bio)
    }
}

/// Calls `body` with a writable memory BIO and returns what it wrote.
func writingMemoryBIO(_ operation: String, _ body: (OpaquePointer) -> Int32) throws -> [UInt8] {
    guard let bio = BIO_new(BIO_s_mem()) else { throw OpenSSLError.drain("allocating a memory BIO") }
    defer { BIO_free(bio) }
    guard body(bio) == 1 else { throw OpenSSLError.drain(operation) }
    return readMemoryBIO(bio)
}
