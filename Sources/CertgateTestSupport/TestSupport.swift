import CertgateCrypto
import Foundation

/// A directory under /tmp removed when the value is released.
public final class TemporaryDirectory: @unchecked Sendable {
    public let path: String

    public init() {
        let template = NSTemporaryDirectory() + "certgate-test-XXXXXX"
        var bytes = Array(template.utf8CString)
        path = String(cString: mkdtemp(&bytes)!)
    }

    public func file(_ name: String) -> String { "\(path)/\(name)" }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// Certificates for a test: a CA, a serving certificate for localhost/127.0.0.1/::1 signed
/// by it, and a separate client CA with a client certificate. Made per test, never committed.
public struct TestPKI: Sendable {
    public let caFile: String
    public let certificateFile: String
    public let keyFile: String
    public let clientCAFile: String
    public let clientCertificateFile: String
    public let clientKeyFile: String
    public let ca: Certificate
    public let caKey: PrivateKey

    public init(in directory: TemporaryDirectory) throws {
        let now = Int64(Date().timeIntervalSince1970)
        let caKey = try PrivateKey.generate(.ecdsaP256)
        let ca = try CertificateSigner.sign(
            CertificateTemplate(commonName: "test CA", isCertificateAuthority: true, notBefore: now - 60, notAfter: now + 86400),
            subjectKey: caKey)
        let clientCAKey = try PrivateKey.generate(.ecdsaP256)
        let clientCA = try CertificateSigner.sign(
            CertificateTemplate(commonName: "test client CA", isCertificateAuthority: true, notBefore: now - 60, notAfter: now + 86400),
            subjectKey: clientCAKey)
        let clientKey = try PrivateKey.generate(.ecdsaP256)
        let client = try CertificateSigner.sign(
            CertificateTemplate(commonName: "kube-apiserver", extendedKeyUsages: [.clientAuth], notBefore: now - 60, notAfter: now + 86400),
            subjectKey: clientKey, issuer: (clientCA, clientCAKey))
        self.ca = ca
        self.caKey = caKey
        caFile = directory.file("ca.crt")
        certificateFile = directory.file("server.crt")
        keyFile = directory.file("server.key")
        clientCAFile = directory.file("client-ca.crt")
        clientCertificateFile = directory.file("client.crt")
        clientKeyFile = directory.file("client.key")
        try ca.pem().write(toFile: caFile, atomically: true, encoding: .utf8)
        try clientCA.pem().write(toFile: clientCAFile, atomically: true, encoding: .utf8)
        try client.pem().write(toFile: clientCertificateFile, atomically: true, encoding: .utf8)
        try clientKey.pkcs8PEM().write(toFile: clientKeyFile, atomically: true, encoding: .utf8)
        try writeServingPair(certificateFile: certificateFile, keyFile: keyFile)
    }

    /// Signs a new serving pair with this CA; returns the new serial number.
    @discardableResult
    public func writeServingPair(certificateFile: String, keyFile: String, commonName: String = "localhost",
                                 dnsNames: [String] = ["localhost"], ipAddresses: [String] = ["127.0.0.1", "::1"]) throws -> String {
        let now = Int64(Date().timeIntervalSince1970)
        let key = try PrivateKey.generate(.ecdsaP256)
        let certificate = try CertificateSigner.sign(
            CertificateTemplate(commonName: commonName, dnsNames: dnsNames, ipAddresses: ipAddresses,
                                notBefore: now - 60, notAfter: now + 86400),
            subjectKey: key, issuer: (ca, caKey))
        try certificate.pem().write(toFile: certificateFile, atomically: true, encoding: .utf8)
        try key.pkcs8PEM().write(toFile: keyFile, atomically: true, encoding: .utf8)
        return certificate.serialNumberHex
    }
}

/// What a finished process printed.
public struct ProcessResult: Sendable {
    public let status: Int32
    public let stdout: String
    public let stderr: String
    public let timedOut: Bool

    public var output: String { stdout + stderr }
}

/// Runs a program to completion (killed after `timeout` seconds) and collects its output.
@discardableResult
public func runProcess(_ executable: String, _ arguments: [String], input: String? = nil, environment: [String: String]? = nil,
                       timeout: Double = 60) throws -> ProcessResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable.hasPrefix("/") ? executable : try which(executable))
    process.arguments = arguments
    if let environment { process.environment = environment }
    let stdout = Pipe()
    let stderr = Pipe()
    let stdin = Pipe()
    process.standardOutput = stdout
    process.standardError = stderr
    process.standardInput = stdin
    let outBox = DataBox()
    let errBox = DataBox()
    // Read on threads of their own, not Dispatch's pool: its few threads are shared with
    // every test that blocks, and a reader queued behind them returned a poll's answer
    // seconds late.
    let readers = DispatchGroup()
    for (pipe, box) in [(stdout, outBox), (stderr, errBox)] {
        readers.enter()
        Thread.detachNewThread {
            box.data = pipe.fileHandleForReading.readDataToEndOfFile()
            readers.leave()
        }
    }
    let exited = DispatchSemaphore(value: 0)
    process.terminationHandler = { _ in exited.signal() }
    try process.run()
    if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
    try? stdin.fileHandleForWriting.close()
    var timedOut = false
    if exited.wait(timeout: .now() + timeout) == .timedOut {
        timedOut = true
        process.terminate()
        kill(process.processIdentifier, SIGKILL)
        exited.wait()
    }
    readers.wait()
    return ProcessResult(status: process.terminationStatus, stdout: String(decoding: outBox.data, as: UTF8.self),
                         stderr: String(decoding: errBox.data, as: UTF8.self), timedOut: timedOut)
}

private final class DataBox: @unchecked Sendable {
    var data = Data()
}

/// The full path of a program on PATH.
public func which(_ name: String) throws -> String {
    for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
        let candidate = "\(directory)/\(name)"
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    throw ToolMissing(name: name)
}

public struct ToolMissing: Error, CustomStringConvertible {
    public let name: String
    public var description: String { "\(name) is not installed (scripts/test installs the test clients)" }
}

/// The repository root, found from this file's location.
public let repositoryRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

/// Runs Tests/Clients/rawclient.py with `arguments` and decodes its JSON line.
public func rawClient(_ arguments: [String], timeout: Double = 60) throws -> [String: Any] {
    let result = try runProcess("python3", ["\(repositoryRoot)/Tests/Clients/rawclient.py"] + arguments, timeout: timeout)
    guard let line = result.stdout.split(separator: "\n").last,
          let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
        throw ClientFailure(output: result.output)
    }
    return object
}

public struct ClientFailure: Error, CustomStringConvertible {
    public let output: String
    public init(output: String) { self.output = output }
    public var description: String { "the test client printed no result: \(output)" }
}

/// A value a test shares with the threads it starts (a client's result, what a callback
/// saw), behind a lock.
public final class Shared<Value>: @unchecked Sendable {
    // @unchecked: every access to `storage` holds `lock`.
    private let lock = NSLock()
    private var storage: Value

    public init(_ value: Value) { storage = value }

    public var value: Value {
        get { lock.withLock { storage } }
        set { lock.withLock { storage = newValue } }
    }

    public func update(_ body: (inout Value) -> Void) {
        lock.withLock { body(&storage) }
    }
}

/// `environment` plus the parent's sanitizer and crash-handler settings, for a child process
/// a test starts with an environment of its own: under scripts/test-asan the child is an
/// instrumented build too and must run with the same options.
public func childEnvironment(_ environment: [String: String]) -> [String: String] {
    var result = environment
    let inherited = ProcessInfo.processInfo.environment
    for name in ["ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS", "SWIFT_BACKTRACE"] where result[name] == nil {
        result[name] = inherited[name]
    }
    return result
}

/// A loopback port that was free a moment ago.
public func freePort() -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
            bind(fd, pointer, length)
            return getsockname(fd, pointer, &length)
        }
    }
    return UInt16(bigEndian: address.sin_port)
}
