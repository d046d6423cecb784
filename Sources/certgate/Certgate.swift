import CertgateCommandLine

@main
enum Certgate {
    static let command = Command("certgate", abstract: "Admission webhook and certificate reconciler for Pki resources.",
                                 subcommands: [Serve.command, Validate.command, Renew.command, certs])

    static let certs = Command("certs", abstract: "Development certificates.", subcommands: [CertsInit.command])

    static func main() {
        Tool(command, version: Version.text).main()
    }
}

struct CertsInit {
    static let command = Command(
        "init",
        abstract: "Write a development CA (ca.crt, ca.key) and a serving certificate (server.crt, server.key) signed by it.",
        options: [OptionGroup([Flags.dir, Flags.hosts, Flags.days, Flags.force])]
    ) { try CertsInit($0).run() }

    enum Flags {
        static let dir = Option<String>("--dir", default: "certs", help: "Directory to write into (created if missing).")
        static let hosts = Option<String>("--hosts", default: "localhost,127.0.0.1,::1",
            help: "Comma-separated DNS names and IP addresses the serving certificate is valid for.")
        static let days = Option<Int>("--days", default: 365, help: "Days the serving certificate is valid (the CA twice as long).")
        static let force = Flag("--force", help: "Replace existing files.")
    }

    let dir: String
    let hosts: String
    let days: Int
    let force: Bool

    init(_ arguments: ParsedArguments) throws {
        dir = try arguments.value(Flags.dir)
        hosts = try arguments.value(Flags.hosts)
        days = try arguments.value(Flags.days)
        force = arguments.isSet(Flags.force)
    }

    func run() throws {
        let files = [DevelopmentCertificates.caFile, DevelopmentCertificates.caKeyFile,
                     DevelopmentCertificates.certificateFile, DevelopmentCertificates.keyFile].map { "\(dir)/\($0)" }
        if !force, let existing = files.first(where: fileExists) {
            throw UsageError("\(existing) already exists; pass --force to replace the development certificates")
        }
        try DevelopmentCertificates(hosts: try parseHosts(hosts, flag: "--hosts"), validDays: days).write(to: dir)
        print("wrote \(files.joined(separator: ", "))")
    }
}

/// The hosts of a comma-separated list such as "localhost,127.0.0.1,::1".
func parseHosts(_ text: String, flag: String) throws -> [String] {
    let hosts = text.split(separator: ",").map { $0.trimmingWhitespace() }.filter { !$0.isEmpty }
    guard !hosts.isEmpty else { throw UsageError("\(flag) names no host") }
    return hosts
}

