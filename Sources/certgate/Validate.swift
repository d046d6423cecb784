import CertgateSystem
import ArgumentParser
import CertgateJSON
import CertgateManifests
import CertgateNet
import CertgatePKI
#if canImport(Glibc)
import Glibc
#endif

struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Judge the Pkis in manifests with the admission rules, for CI pipelines.",
        discussion: """
        Reads multi-document YAML or JSON manifests, judges every certgate.dev Pki in them with \
        the same rules and policy as the webhook, ignores other kinds, and prints each violation \
        and warning. --output text (the default): FILE: NAMESPACE/NAME: spec.path: message \
        (warnings after "warning:"). --output json: one JSON object per line and finding, with \
        file, document (from 1), line, namespace, name, field, value, message and severity \
        (error or warning). --output github: GitHub Actions workflow commands \
        (::error file=F,line=L::...), so a pull request shows each finding on the line of its \
        field. Exit status: 0 when every Pki passes (warnings allowed), 1 when one is denied, \
        2 when an input or the policy cannot be read.
        """
    )

    enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
        case text, json, github
    }

    @Option(name: [.short, .long],
            help: "A manifest file, a directory of them (*.yaml, *.yml, *.json), or - for standard input. Repeatable.",
            completion: .file(extensions: ["yaml", "yml", "json"]))
    var filename: [String] = []

    @Option(help: "Policy YAML. Default: the built-in example policy.", completion: .file(extensions: ["yaml", "yml"]))
    var policy: String?

    @Option(help: "Namespace of objects that name none.")
    var namespace = "default"

    @Option(help: "How findings are printed: text, json (one object per line) or github (workflow annotations).")
    var output: OutputFormat = .text

    func validate() throws {
        guard !filename.isEmpty else {
            throw ValidationError("--filename is missing: name a manifest file, a directory of them, or - for standard input")
        }
    }

    func run() throws {
        let rules: Policy
        do {
            rules = try policy.map(PolicyFile.load) ?? PolicyFile.parse(PolicyFile.builtInDefault)
        } catch {
            printError("certgate validate: policy \(policy ?? "(built-in)"): \(error)")
            throw ExitCode(2)
        }
        var unreadable = false
        var denied = 0
        var judged = 0
        var warnings = 0
        for file in try expandInputs() {
            let text: String
            if let bytes = readWholeFile(file == "-" ? "/dev/stdin" : file) {
                text = String(decoding: bytes, as: UTF8.self)
            } else {
                reportUnreadable(file, "cannot read it")
                unreadable = true
                continue
            }
            let objects: [ManifestObject]
            do {
                objects = try Manifests.objects(in: text)
            } catch {
                reportUnreadable(file, "\(error)")
                unreadable = true
                continue
            }
            for object in objects where object.isPki {
                let pki: Pki
                do {
                    pki = try object.pki()
                } catch {
                    reportUnreadable(file, "document \(object.document + 1): \(error)")
                    unreadable = true
                    continue
                }
                let objectNamespace = pki.metadata.namespace ?? namespace
                let judgement = judge(pki, namespace: objectNamespace, policy: rules)
                judged += 1
                if !judgement.isAllowed { denied += 1 }
                func finding(_ path: String, _ message: String, _ severity: Finding.Severity) -> Finding {
                    let (line, value) = object.field(at: path)
                    return Finding(file: file == "-" ? "<stdin>" : file, document: object.document + 1, line: line, namespace: objectNamespace,
                                   name: pki.metadata.name ?? "(no name)", field: path, value: value, message: message, severity: severity)
                }
                for violation in judgement.violations { printOutput(finding(violation.path, violation.message, .error).rendered(output)) }
                for warning in judgement.warnings {
                    // Warnings name their field first ("spec.duration: ..."), as kubectl shows them.
                    let (path, message) = warning.hasPrefix("spec") ? splitField(warning) : ("", warning)
                    printOutput(finding(path, message, .warning).rendered(output))
                }
                warnings += judgement.warnings.count
            }
        }
        printError("certgate validate: \(judged) Pki\(judged == 1 ? "" : "s") judged, \(denied) denied, \(warnings) warning\(warnings == 1 ? "" : "s")")
        if unreadable { throw ExitCode(2) }
        if denied > 0 { throw ExitCode(1) }
    }

    /// An input that cannot be judged: on standard error, and as an annotation for GitHub.
    private func reportUnreadable(_ file: String, _ message: String) {
        printError("\(file): \(message)")
        if output == .github { printOutput("::error file=\(GitHubCommand.property(file))::\(GitHubCommand.data(message))") }
    }

    private func splitField(_ warning: String) -> (String, String) {
        guard let separator = warning.rangeOfFirst(": ") else { return ("", warning) }
        return (String(warning[..<separator.lowerBound]), String(warning[separator.upperBound...]))
    }

    /// Files named, and the manifests inside directories named, in a stable order.
    private func expandInputs() throws -> [String] {
        var files: [String] = []
        for input in filename {
            var status = stat()
            if input != "-", stat(input, &status) == 0, (status.st_mode & S_IFMT) == S_IFDIR {
                files += listManifests(in: input)
            } else {
                files.append(input)
            }
        }
        return files
    }

    private func listManifests(in directory: String) -> [String] {
        guard let handle = opendir(directory) else { return [] }
        defer { closedir(handle) }
        var names: [String] = []
        while let entry = readdir(handle) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name.hasSuffix(".yaml") || name.hasSuffix(".yml") || name.hasSuffix(".json") { names.append(name) }
        }
        let prefix = directory.hasSuffix("/") ? directory : directory + "/"
        return names.sorted().map { prefix + $0 }
    }
}

/// One violation or warning about one Pki in one file.
struct Finding {
    enum Severity: String { case error, warning }

    var file: String
    /// From 1, as editors and the YAML parser count.
    var document: Int
    var line: Int
    var namespace: String
    var name: String
    /// The rule's field path ("spec.dnsNames[1]"); empty for a warning about no one field.
    var field: String
    /// The field's text when it is a scalar in the manifest.
    var value: String?
    var message: String
    var severity: Severity

    func rendered(_ format: Validate.OutputFormat) -> String {
        let fieldAndMessage = field.isEmpty ? message : "\(field): \(message)"
        switch format {
        case .text:
            return "\(file): \(namespace)/\(name): " + (severity == .warning ? "warning: " : "") + fieldAndMessage
        case .json:
            var writer = JSONWriter()
            writer.object { object in
                object.member("file", string: file)
                object.member("document", int: document)
                object.member("line", int: line)
                object.member("namespace", string: namespace)
                object.member("name", string: name)
                object.member("field", string: field)
                object.key("value")
                if let value { object.string(value) } else { object.null() }
                object.member("message", string: message)
                object.member("severity", string: severity.rawValue)
            }
            return String(decoding: writer.bytes, as: UTF8.self)
        case .github:
            return "::\(severity.rawValue) file=\(GitHubCommand.property(file)),line=\(line),"
                + "title=\(GitHubCommand.property("Pki \(namespace)/\(name)"))::\(GitHubCommand.data(fieldAndMessage))"
        }
    }
}

/// Escaping for GitHub Actions workflow commands (as @actions/core's command.ts escapes).
enum GitHubCommand {
    static func data(_ text: String) -> String {
        text.replacingAll("%", "%25").replacingAll("\r", "%0D").replacingAll("\n", "%0A")
    }

    static func property(_ text: String) -> String {
        data(text).replacingAll(":", "%3A").replacingAll(",", "%2C")
    }
}

private extension String {
    func replacingAll(_ target: Character, _ replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
