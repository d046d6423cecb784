import CertgateCrypto
import CertgateNet
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

/// Keeps the TLS context built from ``ServingCertificateFiles`` current, through a
/// ``FileReloader``: new handshakes get a new pair as soon as it loads, and a pair that does
/// not load leaves the last good one serving.
public final class ServingCertificate: Sendable {
    public typealias Event = FileReloader<TLSContext>.Event

    public let files: ServingCertificateFiles
    private let reloader: FileReloader<TLSContext>

    /// - Parameter onEvent: called after every load attempt whose inputs changed (for logs and metrics).
    public init(files: ServingCertificateFiles, offerHTTP2: Bool = true,
                onEvent: @escaping @Sendable (Event) -> Void = { _ in }) {
        self.files = files
        reloader = FileReloader(paths: [files.certificateFile, files.keyFile] + (files.clientCAFile.map { [$0] } ?? []),
                                build: { try ServingCertificate.build($0, files: files, offerHTTP2: offerHTTP2) },
                                onEvent: onEvent)
    }

    /// The context new connections should use; nil until a pair has loaded.
    public var context: TLSContext? { reloader.value }

    /// Reads the files and swaps in a new context if they changed and load.
    /// Returns the error when they changed and did not load.
    @discardableResult
    public func reload() -> Error? { reloader.reload() }

    /// Polls the files every `interval` seconds on a background queue until ``stopWatching()``.
    public func startWatching(interval: Double = 1.0) { reloader.startWatching(interval: interval) }

    public func stopWatching() { reloader.stopWatching() }

    private static func build(_ contents: [[UInt8]?], files: ServingCertificateFiles, offerHTTP2: Bool) throws -> TLSContext {
        guard let certificatePEM = contents[0] else { throw UnreadableFileError(path: files.certificateFile, role: "serving certificate") }
        guard let keyPEM = contents[1] else { throw UnreadableFileError(path: files.keyFile, role: "serving key") }
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
            guard let caPEM = contents[2] else { throw UnreadableFileError(path: path, role: "client CA") }
            do { clientCAs = try Certificate.chain(pem: caPEM) } catch {
                throw CertificateFileError(path: path, underlying: error)
            }
        }
        return try TLSContext(server: TLSServerConfiguration(
            certificateChain: chain, privateKey: key, clientCertificateAuthorities: clientCAs, offerHTTP2: offerHTTP2))
    }
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
