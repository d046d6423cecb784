import CertgateSystem
import CertgateLocking
import CertgateCrypto
import CertgateNet
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

/// The serving certificate new handshakes get, from one of two sources:
///
/// - ``ServingCertificateFiles`` kept current through a ``FileReloader``: new handshakes get
///   a new pair as soon as it loads, and a pair that does not load leaves the last good one
///   serving;
/// - a pair installed from memory with ``install(certificateChainPEM:keyPEM:)``, for a
///   certificate the process manages itself (kept in a Kubernetes Secret, say).
///
/// Connections already open keep the context they started with.
public final class ServingCertificate: Sendable {
    public typealias Event = FileReloader<TLSContext>.Event

    /// The files watched; nil for an installed certificate.
    public let files: ServingCertificateFiles?
    private let reloader: FileReloader<TLSContext>?
    private let installed = Locked<TLSContext?>(nil)
    private let offerHTTP2: Bool
    /// Shared by every context built here, so session tickets outlive a reload.
    public let ticketKeys: SessionTicketKeys
    private let onEvent: @Sendable (Event) -> Void

    /// A certificate read from `files`.
    /// - Parameter onEvent: called after every load attempt whose inputs changed (for logs and metrics).
    public init(files: ServingCertificateFiles, offerHTTP2: Bool = true, ticketKeys: SessionTicketKeys = SessionTicketKeys(),
                onEvent: @escaping @Sendable (Event) -> Void = { _ in }) {
        self.files = files
        self.offerHTTP2 = offerHTTP2
        self.ticketKeys = ticketKeys
        self.onEvent = onEvent
        reloader = FileReloader(paths: [files.certificateFile, files.keyFile] + (files.clientCAFile.map { [$0] } ?? []),
                                build: { try ServingCertificate.build($0, files: files, offerHTTP2: offerHTTP2, ticketKeys: ticketKeys) },
                                onEvent: onEvent)
    }

    /// A certificate the owner installs with ``install(certificateChainPEM:keyPEM:)``; until
    /// then ``context`` is nil and handshakes fail.
    public init(offerHTTP2: Bool = true, ticketKeys: SessionTicketKeys = SessionTicketKeys(),
                onEvent: @escaping @Sendable (Event) -> Void = { _ in }) {
        files = nil
        reloader = nil
        self.offerHTTP2 = offerHTTP2
        self.ticketKeys = ticketKeys
        self.onEvent = onEvent
    }

    /// The context new connections should use; nil until a pair has loaded.
    public var context: TLSContext? { reloader?.value ?? installed.withLock { $0 } }

    /// Serves `certificateChainPEM` (leaf first) with `keyPEM` from the next handshake on.
    /// A pair that does not load throws and leaves the current one serving.
    public func install(certificateChainPEM: [UInt8], keyPEM: [UInt8]) throws {
        do {
            let context = try ServingCertificate.build([certificateChainPEM, keyPEM], files: nil, offerHTTP2: offerHTTP2,
                                                           ticketKeys: ticketKeys)
            installed.withLock { $0 = context }
            onEvent(.loaded(context))
        } catch {
            onEvent(.rejected(error))
            throw error
        }
    }

    /// Reads the files and swaps in a new context if they changed and load.
    /// Returns the error when they changed and did not load (nil for an installed certificate).
    @discardableResult
    public func reload() -> Error? { reloader?.reload() }

    /// Polls the files every `interval` seconds on a background queue until ``stopWatching()``.
    public func startWatching(interval: Double = 1.0) throws { try reloader?.startWatching(interval: interval) }

    public func stopWatching() { reloader?.stopWatching() }

    /// Builds the context from the files' contents, or from an installed pair when `files` is nil.
    private static func build(_ contents: [[UInt8]?], files: ServingCertificateFiles?, offerHTTP2: Bool,
                              ticketKeys: SessionTicketKeys) throws -> TLSContext {
        let certificateSource = files?.certificateFile ?? "the installed certificate"
        let keySource = files?.keyFile ?? "the installed key"
        guard let certificatePEM = contents[0] else { throw UnreadableFileError(path: certificateSource, role: "serving certificate") }
        guard let keyPEM = contents[1] else { throw UnreadableFileError(path: keySource, role: "serving key") }
        let chain: [Certificate]
        do { chain = try Certificate.chain(pem: certificatePEM) } catch {
            throw CertificateFileError(path: certificateSource, underlying: error)
        }
        let key: PrivateKey
        do { key = try PrivateKey(pem: keyPEM) } catch {
            throw CertificateFileError(path: keySource, underlying: error)
        }
        guard chain[0].matches(key) else {
            throw MismatchedKeyError(certificateFile: certificateSource, keyFile: keySource)
        }
        var clientCAs: [Certificate]?
        if let path = files?.clientCAFile {
            guard let caPEM = contents[2] else { throw UnreadableFileError(path: path, role: "client CA") }
            do { clientCAs = try Certificate.chain(pem: caPEM) } catch {
                throw CertificateFileError(path: path, underlying: error)
            }
        }
        return try TLSContext(server: TLSServerConfiguration(
            certificateChain: chain, privateKey: key, clientCertificateAuthorities: clientCAs, offerHTTP2: offerHTTP2,
            ticketKeys: ticketKeys))
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
    public init(path: String, underlying: Error) {
        self.path = path
        self.underlying = underlying
    }
    public var description: String { "\(path): \(underlying)" }
}
