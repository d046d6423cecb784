import ArgumentParser
import CertgateJSON
import CertgateKube
import CertgateManifests
import CertgatePKI
import CertgateStatus
import CertgateSystem

/// How status and inspect print: for a person, or for a script.
enum ReportFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json
}

/// `certgate status pki NAME -n NAMESPACE` (and `kubectl certgate status pki NAME`, with the
/// binary installed as kubectl-certgate): why a Pki is, or is not, Ready, in one screen.
struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show why a Pki is or is not Ready: conditions, certificate, judgement, pods and Events.",
        subcommands: [StatusPki.self]
    )
}

struct StatusPki: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pki",
        abstract: "One Pki: its conditions, the certificate in its Secret, whether it still matches the spec and the policy, whether its chain verifies, the pods that use it and its recent Events.",
        discussion: """
            Needs read access only: get pkis, secrets and configmaps, list pods and events.
            Exit status: 0 Ready, 1 not Ready, 2 not found, 3 the cluster could not be read.
            """
    )

    @Option(name: [.short, .long], help: "Namespace of the Pki. Default: the kubeconfig context's, else default (as kubectl).")
    var namespace: String?

    @Argument(help: "Name of the Pki.")
    var name: String

    @Option(name: [.short, .long], help: "text for a person, json for a script.")
    var output: ReportFormat = .text

    @Option(help: ArgumentHelp("The policy file to judge by (as certgate serve --policy reads it).", valueName: "file"), completion: .file())
    var policy: String?

    @Option(help: ArgumentHelp("Else the ConfigMap holding it (key policy.yaml), as the chart keeps it.", valueName: "namespace/name"))
    var policyConfigmap = "certgate/certgate-policy"

    @OptionGroup var cluster: ClusterOptions

    func run() throws {
        let configuration = try cluster.load()
        let client = try KubeClient(configuration: configuration, userAgent: Version.userAgent)
        let namespace = self.namespace ?? configuration.namespace ?? "default"
        let report: PkiStatusReport
        do {
            report = try StatusReader(client: client).pki(namespace: namespace, name: name) { loadPolicy(client) }
        } catch let failure as StatusReader.Failure {
            printError("certgate status: \(failure)")
            throw ExitCode(2)
        } catch {
            printError("certgate status: pki \(namespace)/\(name): \(error)")
            throw ExitCode(3)
        }
        switch output {
        case .text: printOutput(report.text.trimmingWhitespace())
        case .json: printOutput(String(decoding: try JSONCoding.encode(report), as: UTF8.self))
        }
        if report.ready != "True" { throw ExitCode(1) }
    }

    private func loadPolicy(_ client: KubeClient) -> Result<Policy, Error> {
        Result {
            if let policy { return try PolicyFile.load(path: policy) }
            let parts = policyConfigmap.split(separator: "/", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw ValidationError("--policy-configmap: \"\(policyConfigmap)\" is not NAMESPACE/NAME") }
            guard let map = try client.getIfPresent(.configMaps, namespace: parts[0], name: parts[1], as: ConfigMap.self) else {
                throw ValidationError("ConfigMap \(policyConfigmap) does not exist")
            }
            guard let text = map.data?["policy.yaml"] else { throw ValidationError("ConfigMap \(policyConfigmap) has no policy.yaml") }
            return try PolicyFile.parse(text)
        }
    }
}

/// `certgate inspect secret NAME -n NAMESPACE`: any kubernetes.io/tls Secret, decoded.
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Decode a TLS Secret: its certificate, key and chain.",
        subcommands: [InspectSecret.self]
    )
}

struct InspectSecret: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "secret",
        abstract: "The certificate of a kubernetes.io/tls Secret (subject, names, key, issuer, serial, validity) and whether its chain verifies against its ca.crt.",
        discussion: "Exit status: 0 a certificate whose chain verifies, 1 a problem with it, 2 not found, 3 the cluster could not be read."
    )

    @Option(name: [.short, .long], help: "Namespace of the Secret. Default: the kubeconfig context's, else default (as kubectl).")
    var namespace: String?

    @Argument(help: "Name of the Secret.")
    var name: String

    @Option(name: [.short, .long], help: "text for a person, json for a script.")
    var output: ReportFormat = .text

    @OptionGroup var cluster: ClusterOptions

    func run() throws {
        let configuration = try cluster.load()
        let client = try KubeClient(configuration: configuration, userAgent: Version.userAgent)
        let namespace = self.namespace ?? configuration.namespace ?? "default"
        let report: SecretReport
        do {
            report = try StatusReader(client: client).secret(namespace: namespace, name: name)
        } catch let failure as StatusReader.Failure {
            printError("certgate inspect: \(failure)")
            throw ExitCode(2)
        } catch {
            printError("certgate inspect: secret \(namespace)/\(name): \(error)")
            throw ExitCode(3)
        }
        switch output {
        case .text: printOutput(report.text().trimmingWhitespace())
        case .json: printOutput(String(decoding: try JSONCoding.encode(report), as: UTF8.self))
        }
        if report.problem != nil || report.certificate?.chainVerifies != true { throw ExitCode.failure }
    }
}
