import CertgateCrypto
import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Where the serving certificate comes from: PEM files that may be replaced at any time.
public struct ServingCertificateFiles: Sendable, Equatable {
    public var certificateFile: String
    public var keyFile: String
    public var clientCAFile: String?

    public init(certificateFile: String, keyFile: String, clientCAFile: String? = nil) {
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        self.clientCAFile = clientCAFile
    }
}

/// Keeps the TLS context built from ``ServingCertificateFiles`` current.
///
/// The files are read again on every poll and compared with what was last seen, which catches
/// every way they change, including Kubernetes' swap of the `..data` symlink behind a mounted
/// Secret. A pair that does not load (a half-written file, a key that does not match) leaves
/// the last good context serving and is reported once per distinct content.
public final class ServingCertificate: Sendable {
    /// What a reload attempt found.
    public enum Event: Sendable {
        case loaded(TLSContext)
        case rejected(Error)
    }

    public let files: ServingCertificateFiles
    private let offerHTTP2: Bool
    private let current = Mutex<TLSContext?>(nil)
    private let lastSeen = Mutex<[[UInt8]?]?>(nil)
    // Set by startWatching and cleared by stopWatching, both called by the owner during
    // start-up and shutdown, never concurrently.
    private nonisolated(unsafe) var timer: DispatchSourceTimer?
    private let onEvent: @Sendable (Event) -> Void

    /// - Parameter onEvent: called after every load attempt whose inputs changed (for logs and metrics).
    public init(files: ServingCertificateFiles, offerHTTP2: Bool = true,
                onEvent: @escaping @Sendable (Event) -> Void = { _ in }) {
        self.files = files
        self.offerHTTP2 = offerHTTP2
        self.onEvent = onEvent
    }

    /// The context new connections should use; nil until a pair has loaded.
    public var context: TLSContext? { current.withLock { $0 } }

    /// Reads the files and swaps in a new context if they changed and load.
    /// Returns the error when they changed and did not load.
    @discardableResult
    public func reload() -> Error? {
        let contents = [readFile(files.certificateFile), readFile(files.keyFile), files.clientCAFile.map(readFile) ?? nil]
        let changed = lastSeen.withLock { last -> Bool in
            if let last, last == contents { return false }
            last = contents
            return true
        }
        guard changed else { return nil }
        do {
            let context = try build(contents)
            current.withLock { $0 = context }
            onEvent(.loaded(context))
            return nil
        } catch {
            onEvent(.rejected(error))
            return error
        }
    }

    /// Polls the files every `interval` seconds on a background queue until ``stopWatching()``.
    public func startWatching(interval: Double = 1.0) {
        let source = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "certgate.certificate-watch"))
        source.schedule(deadline: .now() + interval, repeating: interval, leeway: .milliseconds(100))
        source.setEventHandler { [weak self] in self?.reload() }
        source.resume()
        timer = source
    }

    public func stopWatching() {
        timer?.cancel()
        timer = nil
    }

    private func build(_ contents: [[UInt8]?]) throws -> TLSContext {
        guard let certificatePEM = contents[0] else { throw MissingFileError(path: files.certificateFile, what: "serving certificate") }
        guard let keyPEM = contents[1] else { throw MissingFileError(path: files.keyFile, what: "serving key") }
        let chain: [Certificate]
        do { chain = try Certificate.chain(pem: certificatePEM) } catch {
            throw CertificateFileError(path: files.certificateFile, underlying: error)
        }
        let key: PrivateKey
        do { key = try PrivateKey(pem: keyPEM) } catch {
            throw CertificateFileError(path: files.keyFile, underlying: error)
        }
        guard chain[0].matches(key) else {
            throw MismatchedKeyError(certificateFile: files.certificateFile, keyFile: files.keyFile)
        }
        var clientCAs: [Certificate]?
        if let path = files.clientCAFile {
            guard let caPEM = contents[2] else { throw MissingFileError(path: path, what: "client CA") }
            do { clientCAs = try Certificate.chain(pem: caPEM) } catch {
                throw CertificateFileError(path: path, underlying: error)
            }
        }
        return try TLSContext(server: TLSServerConfiguration(
            certificateChain: chain, privateKey: key, clientCertificateAuthorities: clientCAs, offerHTTP2: offerHTTP2))
    }
}

/// A certificate, key or CA file that could not be read.
public struct MissingFileError: Error, CustomStringConvertible {
    public let path: String
    public let what: String
    public var description: String { "cannot read the \(what) file \(path): it does not exist or is not readable" }
}

/// A key file whose key is not the one the certificate was issued for.
public struct MismatchedKeyError: Error, CustomStringConvertible {
    public let certificateFile: String
    public let keyFile: String
    public var description: String {
        "the private key in \(keyFile) does not match the certificate in \(certificateFile) (were they written at different times?)"
    }
}

/// A certificate, key or CA file whose contents did not parse.
public struct CertificateFileError: Error, CustomStringConvertible {
    public let path: String
    public let underlying: Error
    public var description: String { "\(path): \(underlying)" }
}

/// Reads a whole file through the symlinks Kubernetes uses; nil if it cannot be read.
func readFile(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var result: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 16 * 1024)
    while true {
        let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count < 0 { if errno == EINTR { continue }; return nil }
        if count == 0 { return result }
        result.append(contentsOf: chunk[0..<count])
    }
}
