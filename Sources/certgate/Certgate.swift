import ArgumentParser

@main
struct Certgate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "certgate",
        abstract: "Admission webhook and certificate reconciler for Pki resources.",
        subcommands: [Serve.self, Validate.self, Certs.self]
    )
}

struct Certs: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Development certificates.",
        subcommands: [CertsInit.self]
    )
}

struct CertsInit: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Write a development CA (ca.crt, ca.key) and a serving certificate (server.crt, server.key) signed by it."
    )

    @Option(help: "Directory to write into (created if missing).")
    var dir = "certs"

    @Option(help: "Comma-separated DNS names and IP addresses the serving certificate is valid for.")
    var hosts = "localhost,127.0.0.1,::1"

    @Option(help: "Days the serving certificate is valid (the CA twice as long).")
    var days = 365

    @Flag(help: "Replace existing files.")
    var force = false

    func run() throws {
        let files = [DevelopmentCertificates.caFile, DevelopmentCertificates.caKeyFile,
                     DevelopmentCertificates.certificateFile, DevelopmentCertificates.keyFile].map { "\(dir)/\($0)" }
        if !force, let existing = files.first(where: fileExists) {
            throw ValidationError("\(existing) already exists; pass --force to replace the development certificates")
        }
        let (dnsNames, ipAddresses) = try splitHosts(hosts)
        try DevelopmentCertificates(dnsNames: dnsNames, ipAddresses: ipAddresses, validDays: days).write(to: dir)
        print("wrote \(files.joined(separator: ", "))")
    }
}

/// Splits "localhost,127.0.0.1,::1" into DNS names and IP literals.
func splitHosts(_ text: String) throws -> (dns: [String], ips: [String]) {
    var dns: [String] = []
    var ips: [String] = []
    for host in text.split(separator: ",").map({ String($0).trimmingCharacters() }) where !host.isEmpty {
        if isIPAddress(host) { ips.append(host) } else { dns.append(host) }
    }
    guard !dns.isEmpty || !ips.isEmpty else { throw ValidationError("--hosts names no host") }
    return (dns, ips)
}

extension String {
    func trimmingCharacters() -> String {
        var slice = Substring(self)
        while slice.first?.isWhitespace == true { slice = slice.dropFirst() }
        while slice.last?.isWhitespace == true { slice = slice.dropLast() }
        return String(slice)
    }
}
