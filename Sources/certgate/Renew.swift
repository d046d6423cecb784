import CertgatePKI
import CertgateSystem
import ArgumentParser
import CertgateKube
import CertgateNet
import CertgateReconciler

/// `certgate renew -n NS NAME`: asks the reconciler to issue a Pki's certificate again, once,
/// by setting the certgate.dev/renew annotation to the current time (as `cmctl renew` does
/// for cert-manager). The reconciler records the value in status.lastRenewRequest, so the
/// same value never re-issues twice; the Pki's Events show the Renewed certificate and who
/// asked (the field manager, certgate-renew).
struct Renew: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-issue the certificate of one or more Pkis now, once.",
        discussion: "Sets the certgate.dev/renew annotation to the current time; kubectl annotate --overwrite with any new value does the same."
    )

    @Option(name: [.short, .long], help: "Namespace of the Pkis. Default: the kubeconfig context's, else default (as kubectl).")
    var namespace: String?

    @OptionGroup var cluster: ClusterOptions

    @Argument(help: "Names of the Pkis to renew.")
    var names: [String] = []

    func validate() throws {
        guard !names.isEmpty else { throw ValidationError("name at least one Pki to renew") }
    }

    func run() throws {
        let configuration = try cluster.load()
        let client = try KubeClient(configuration: configuration, userAgent: Version.userAgent)
        let namespace = self.namespace ?? configuration.namespace ?? "default"
        // Nanoseconds, so two requests within one second still differ.
        let value = utcTimestampNow(fractionDigits: 9)
        var failed = 0
        for name in names {
            let patch = #"{"metadata":{"annotations":{"\#(PkiReconciler.renewAnnotation)":"\#(value)"}}}"#
            do {
                let _: Pki = try client.mergePatch(.pkis, namespace: namespace, name: name, patch: Array(patch.utf8),
                                                           fieldManager: "certgate-renew")
                printOutput("pki \(namespace)/\(name): renewal requested (\(PkiReconciler.renewAnnotation)=\(value))")
            } catch let status as APIStatus where status.isNotFound {
                printError("certgate renew: pki \(namespace)/\(name): not found")
                failed += 1
            } catch {
                printError("certgate renew: pki \(namespace)/\(name): \(error)")
                failed += 1
            }
        }
        if failed > 0 { throw ExitCode.failure }
    }
}
