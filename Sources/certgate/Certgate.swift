import CertgateSystem
import ArgumentParser
import CertgatePKI
#if canImport(Glibc)
import Glibc
#endif

/// The command line, read by swift-argument-parser: each option is declared once, where the
/// command keeps it, with its type, default and help; the library parses, validates and
/// prints help, usage errors (exit status 64) and the shells' completion scripts.
@main
struct Certgate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "certgate",
        abstract: "Admission webhook and certificate reconciler for Pki resources.",
        version: Version.text,
        subcommands: [Serve.self, Validate.self, Renew.self, Status.self, Inspect.self, Certs.self, Completion.self, VersionCommand.self]
    )

    /// Parses and runs, as `ParsableCommand.main()` does, after one check of its own: a
    /// misspelt subcommand is named with the nearest one ("did you mean serve?") rather than
    /// called an unexpected argument.
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if let misspelt = unknownSubcommand(in: arguments) {
            let names = configuration.subcommands.map { $0._commandName }
            let hint = closestMatch(to: misspelt, among: names).map { "; did you mean \($0)?" } ?? " (one of \(names.joined(separator: ", ")))"
            exit(withError: ValidationError("unknown subcommand \"\(misspelt)\"\(hint)"))
        }
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
        } catch {
            exit(withError: error)
        }
    }

    /// The first argument when it names no subcommand (and is not an option or `help`).
    static func unknownSubcommand(in arguments: [String]) -> String? {
        guard let first = arguments.first, !first.hasPrefix("-"), first != "help" else { return nil }
        return configuration.subcommands.contains { $0._commandName == first } ? nil : first
    }
}

struct Certs: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Development certificates.", subcommands: [CertsInit.self])
}

struct CertsInit: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Write a development CA (ca.crt, ca.key) and a serving certificate (server.crt, server.key) signed by it."
    )

    @Option(help: "Directory to write into (created if missing).", completion: .directory)
    var dir = "certs"

    @Option(help: "Comma-separated DNS names and IP addresses the serving certificate is valid for.")
    var hosts = "localhost,127.0.0.1,::1"

    @Option(help: "Days the serving certificate is valid (the CA twice as long).")
    var days = 365

    @Flag(help: "Replace existing files.")
    var force = false

    func validate() throws {
        _ = try parseHosts(hosts, flag: "--hosts")
        guard days >= 1 else { throw ValidationError("--days must be at least 1") }
    }

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

/// `certgate completion SHELL`: the script `--generate-completion-script` prints, under the
/// name the README has always given.
struct Completion: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a shell completion script: source <(certgate completion bash), or the same with zsh or fish."
    )

    enum Shell: String, ExpressibleByArgument, CaseIterable {
        case bash, zsh, fish
    }

    @Argument(help: "The shell: bash, zsh or fish.")
    var shell: Shell

    func run() {
        // Every Shell case is a shell the library writes scripts for.
        printOutput(Certgate.completionScript(for: CompletionShell(rawValue: shell.rawValue)!))
    }
}

struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "version", abstract: "Print certgate's version.")

    func run() {
        printOutput(Version.text)
    }
}

/// The hosts of a comma-separated list such as "localhost,127.0.0.1,::1".
func parseHosts(_ text: String, flag: String) throws -> [String] {
    let hosts = text.split(separator: ",").map { $0.trimmingWhitespace() }.filter { !$0.isEmpty }
    guard !hosts.isEmpty else { throw ValidationError("\(flag) names no host") }
    return hosts
}

/// A line to standard error, written at once.
func printError(_ line: String) { writeAll(line + "\n", to: 2) }

/// A line to standard output, written at once: a command's findings and its summary on
/// stderr keep their order when both go to one pipe (print's buffer let the summary
/// overtake them).
func printOutput(_ line: String) { writeAll(line + "\n", to: 1) }

private func writeAll(_ text: String, to descriptor: Int32) {
    let bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
        let written = bytes[offset...].withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        if written < 0 && errno == EINTR { continue }
        guard written > 0 else { return }
        offset += written
    }
}
