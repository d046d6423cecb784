import CertgateCrypto
#if canImport(Glibc)
import Glibc
#endif

/// A development CA and a serving certificate signed by it, as `certgate certs init` writes them.
struct DevelopmentCertificates {
    static let caFile = "ca.crt"
    static let caKeyFile = "ca.key"
    static let certificateFile = "server.crt"
    static let keyFile = "server.key"

    /// DNS names and IP literals the serving certificate is for.
    let hosts: [String]
    let validDays: Int

    /// Makes the four files in `directory` (created if missing). Keys are written 0600 and every
    /// file is replaced atomically, so a server watching them never reads half a file.
    func write(to directory: String) throws {
        let now = Int64(time(nil))
        let backdate: Int64 = 5 * 60
        let (ca, caKey) = try CertificateSigner.makeAuthority(commonName: "certgate development CA", notBefore: now - backdate,
                                                              notAfter: now + Int64(validDays) * 86400 * 2)
        let (server, serverKey) = try CertificateSigner.makeServingCertificate(hosts: hosts, notBefore: now - backdate,
                                                                               notAfter: now + Int64(validDays) * 86400,
                                                                               issuer: (ca, caKey))

        try makeDirectory(directory)
        try writeFile("\(directory)/\(Self.caKeyFile)", try caKey.pkcs8PEM(), mode: 0o600)
        try writeFile("\(directory)/\(Self.caFile)", try ca.pem(), mode: 0o644)
        try writeFile("\(directory)/\(Self.keyFile)", try serverKey.pkcs8PEM(), mode: 0o600)
        try writeFile("\(directory)/\(Self.certificateFile)", try server.pem(), mode: 0o644)
    }
}

struct FileError: Error, CustomStringConvertible {
    let path: String
    let operation: String
    let code: Int32
    var description: String { "\(operation) \(path): \(String(cString: strerror(code)))" }
}

func makeDirectory(_ path: String) throws {
    var current = path.hasPrefix("/") ? "" : "."
    for component in path.split(separator: "/") {
        current += "/" + component
        if mkdir(current, 0o755) != 0 && errno != EEXIST {
            throw FileError(path: current, operation: "creating directory", code: errno)
        }
    }
}

/// Writes `contents` to a temporary file beside `path` with `mode`, then renames it over `path`.
func writeFile(_ path: String, _ contents: String, mode: mode_t) throws {
    let temporary = path + ".tmp-\(getpid())"
    let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
    guard fd >= 0 else { throw FileError(path: temporary, operation: "creating", code: errno) }
    fchmod(fd, mode)  // the umask must not widen or narrow what was asked
    let bytes = Array(contents.utf8)
    var offset = 0
    while offset < bytes.count {
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
        if written < 0 {
            let code = errno
            close(fd)
            unlink(temporary)
            throw FileError(path: temporary, operation: "writing", code: code)
        }
        offset += written
    }
    fsync(fd)
    close(fd)
    guard rename(temporary, path) == 0 else {
        let code = errno
        unlink(temporary)
        throw FileError(path: path, operation: "renaming into", code: code)
    }
}

func fileExists(_ path: String) -> Bool {
    access(path, F_OK) == 0
}
