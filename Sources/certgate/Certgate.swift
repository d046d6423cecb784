import ArgumentParser

@main
struct Certgate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "certgate",
        abstract: "Admission webhook and certificate reconciler for Pki resources.",
        subcommands: [Serve.self, Validate.self, Renew.self, Certs.self]
    )
}

struct Certs: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "certs",
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
        try DevelopmentCertificates(hosts: try parseHosts(hosts, flag: "--hosts"), validDays: days).write(to: dir)
        print("wrote \(files.joined(separator: ", "))")
    }
}

/// The hosts of a comma-separated list such as "localhost,127.0.0.1,::1".
func parseHosts(_ text: String, flag: String) throws -> [String] {
    let hosts = text.split(separator: ",").map { $0.trimmingWhitespace() }.filter { !$0.isEmpty }
    guard !hosts.isEmpty else { throw ValidationError("\(flag) names no host") }
    return hosts
}

