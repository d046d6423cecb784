import ArgumentParser
import CertgateManifests
import CertgateNet
import CertgatePKI
#if canImport(Glibc)
import Glibc
#endif

struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Judge the Pkis in manifests with the admission rules, for CI pipelines.",
        discussion: """
        Reads multi-document YAML or JSON manifests, judges every certgate.dev Pki in them with \
        the same rules and policy as the webhook, ignores other kinds, and prints each violation \
        and warning as FILE: NAMESPACE/NAME: spec.path: message (warnings after "warning:"). \
        Exit status: 0 when every Pki passes (warnings allowed), 1 when one is denied, 2 when \
        an input or the policy cannot be read.
        """
    )

    @Option(name: .shortAndLong, help: "A manifest file, a directory of them (*.yaml, *.yml, *.json), or - for standard input. Repeatable.")
    var filename: [String]

    @Option(help: "Policy YAML. Default: the built-in example policy.")
    var policy: String?

    @Option(help: "Namespace of objects that name none.")
    var namespace = "default"

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
                printError("\(file): cannot read it")
                unreadable = true
                continue
            }
            let objects: [ManifestObject]
            do {
                objects = try Manifests.objects(in: text)
            } catch {
                printError("\(file): \(error)")
                unreadable = true
                continue
            }
            for object in objects where object.isPki {
                let pki: Pki
                do {
                    pki = try object.pki()
                } catch {
                    printError("\(file): document \(object.document + 1): \(error)")
                    unreadable = true
                    continue
                }
                let objectNamespace = pki.metadata.namespace ?? namespace
                let label = "\(file == "-" ? "<stdin>" : file): \(objectNamespace)/\(pki.metadata.name ?? "(no name)")"
                let judgement = judge(pki, namespace: objectNamespace, policy: rules)
                judged += 1
                if !judgement.isAllowed { denied += 1 }
                for violation in judgement.violations { printOutput("\(label): \(violation)") }
                for warning in judgement.warnings { printOutput("\(label): warning: \(warning)") }
                warnings += judgement.warnings.count
            }
        }
        printError("certgate validate: \(judged) Pki\(judged == 1 ? "" : "s") judged, \(denied) denied, \(warnings) warning\(warnings == 1 ? "" : "s")")
        if unreadable { throw ExitCode(2) }
        if denied > 0 { throw ExitCode(1) }
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

/// A line to standard error, written at once.
func printError(_ line: String) { writeLine(line, to: 2) }

/// A line to standard output, written at once: findings and the summary on stderr keep
/// their order when both go to one pipe (print's buffer let the summary overtake them).
func printOutput(_ line: String) { writeLine(line, to: 1) }

private func writeLine(_ line: String, to descriptor: Int32) {
    let bytes = Array((line + "\n").utf8)
    var offset = 0
    while offset < bytes.count {
        let written = bytes[offset...].withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        if written < 0 && errno == EINTR { continue }
        guard written > 0 else { return }
        offset += written
    }
}
