import CertgateKube
import CertgateKubeTesting
import CertgateManifests
import CertgatePKI
import CertgateTestSupport
import Foundation
import Testing

/// `certgate status pki` and `certgate inspect secret`, as the person on call runs them, and
/// through kubectl as a plugin.
@Suite struct StatusCommandTests {
    /// A Ready Pki and one refused by the policy, reconciled by certgate serve; the policy in
    /// the ConfigMap where the chart keeps it.
    private func cluster() throws -> ServeWithPkis {
        let running = try ServeWithPkis(["web"])
        _ = try running.client.create(.configMaps, namespace: "certgate", ConfigMap(
            metadata: ObjectMeta(name: "certgate-policy", namespace: "certgate"), data: ["policy.yaml": PolicyFile.builtInDefault]))
        _ = try running.client.create(.pkis, namespace: "app1", Pki(metadata: ObjectMeta(name: "typo", namespace: "app1"),
                                                                    spec: PkiSpec(serviceName: "appp1", dnsNames: ["appp1.app1.svc"])))
        let settled = eventually(within: 30) { () -> Bool? in
            let reasons = ["web", "typo"].map { name in
                (try? running.client.get(.pkis, namespace: "app1", name: name, as: Pki.self))?.status?.conditions?.first { $0.type == "Ready" }?.reason
            }
            return reasons == ["Issued", "InvalidSpec"] ? true : nil
        }
        #expect(settled == true, "both reconciled")
        return running
    }

    private func status(_ running: ServeWithPkis, _ arguments: [String]) throws -> ProcessResult {
        try runProcess(certgateBinary, arguments + ["--kubeconfig", running.directory.file("kubeconfig")])
    }

    @Test func aReadyPkiShowsItsCertificateJudgementPodsAndEvents() throws {
        let running = try cluster()
        defer { running.stop() }
        let ready = try status(running, ["status", "pki", "web", "-n", "app1"])
        #expect(ready.status == 0, "\(ready.output)")
        let text = ready.stdout
        #expect(text.hasPrefix("Pki app1/web: Ready (Issued): Certificate is valid until "), "\(text)")
        #expect(text.contains("  Ready    True   Issued  Certificate is valid until "), "\(text)")
        #expect(text.contains("Secret app1/web:\n"), "\(text)")
        #expect(text.contains("  DNS names:    web.app1.svc\n"), "\(text)")
        #expect(text.contains("  Key:          ECDSA P-256\n"), "\(text)")
        #expect(text.contains("  Issuer:       CN=certgate certgate-ca\n"), "\(text)")
        #expect(text.contains("  Chain:        verifies against ca.crt and the issuer's root\n"), "\(text)")
        #expect(text.contains("Spec and policy: allowed\n"), "\(text)")
        #expect(text.contains("Certificate: matches the spec; renewed at "), "\(text)")
        #expect(text.contains("(judged with the policy and the CA of issuer \"default\" (certgate/certgate-ca))"), "\(text)")
        #expect(text.contains("Normal  Issued: Issued certificate for web.app1.svc"), "\(text)")

        let json = try status(running, ["status", "pki", "web", "-n", "app1", "--output", "json"])
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        #expect(object?["ready"] as? String == "True", "\(json.output)")
        #expect(((object?["secret"] as? [String: Any])?["certificate"] as? [String: Any])?["chainVerifies"] as? Bool == true)

        let inspected = try status(running, ["inspect", "secret", "web", "-n", "app1"])
        #expect(inspected.status == 0, "\(inspected.output)")
        #expect(inspected.stdout.hasPrefix("Secret app1/web:\n"), "\(inspected.output)")
        #expect(inspected.stdout.contains("  DNS names:    web.app1.svc\n"), "\(inspected.output)")
        #expect(inspected.stdout.contains("  Chain:        verifies against ca.crt"), "\(inspected.output)")
    }

    @Test func aRefusedPkiSaysWhyAndExitsOne() throws {
        let running = try cluster()
        defer { running.stop() }
        let refused = try status(running, ["status", "pki", "typo", "-n", "app1"])
        #expect(refused.status == 1, "\(refused.output)")
        #expect(refused.stdout.hasPrefix("Pki app1/typo: not Ready (InvalidSpec): spec.serviceName: \"appp1\" is not in the allowed names"),
                "\(refused.stdout)")
        #expect(refused.stdout.contains("Secret app1/typo:\n  the Secret does not exist\n"), "\(refused.stdout)")
        #expect(refused.stdout.contains("Spec and policy: refused: spec.serviceName: \"appp1\""), "\(refused.stdout)")
        #expect(refused.stdout.contains("Certificate: none: certgate issues nothing while the spec is refused\n"), "\(refused.stdout)")
        #expect(refused.stdout.contains("Warning InvalidSpec:"), "\(refused.stdout)")

        let missing = try status(running, ["status", "pki", "nothing", "-n", "app1"])
        #expect(missing.status == 2 && missing.stderr.contains("certgate status: pki app1/nothing not found"), "\(missing.output)")
        let notTLS = try status(running, ["inspect", "secret", "nothing", "-n", "app1"])
        #expect(notTLS.status == 2, "\(notTLS.output)")
    }

    /// Installed as kubectl-certgate, kubectl finds it and runs it as `kubectl certgate`.
    @Test func kubectlFindsItAsAPlugin() throws {
        let kubectl = try which("kubectl")
        let running = try cluster()
        defer { running.stop() }
        let bin = TemporaryDirectory()
        try FileManager.default.createSymbolicLink(atPath: bin.file("kubectl-certgate"), withDestinationPath: certgateBinary)
        let environment = childEnvironment(["PATH": "\(bin.path):/usr/bin:/bin", "HOME": bin.path])
        let listed = try runProcess(kubectl, ["plugin", "list"], environment: environment)
        #expect(listed.stdout.contains(bin.file("kubectl-certgate")), "\(listed.output)")
        // As kubectl does, the namespace comes from the kubeconfig's context when -n is not given.
        let kubeconfig = try String(contentsOfFile: running.directory.file("kubeconfig"), encoding: .utf8)
            .replacingOccurrences(of: "context: {cluster: test, user: test}", with: "context: {cluster: test, user: test, namespace: app1}")
        try kubeconfig.write(toFile: bin.file("kubeconfig"), atomically: true, encoding: .utf8)
        let viaKubectl = try runProcess(kubectl, ["certgate", "status", "pki", "web", "--kubeconfig", bin.file("kubeconfig")],
                                        environment: environment)
        #expect(viaKubectl.status == 0 && viaKubectl.stdout.hasPrefix("Pki app1/web: Ready (Issued)"), "\(viaKubectl.output)")
    }

    /// kubectl get pkis shows the Ready column; -o wide adds the Ready reason and message,
    /// as cert-manager's STATUS column does (the test API server serves the CRD's columns
    /// as a Table, as the real one does).
    @Test func kubectlGetWideShowsTheReadyReasonAndMessage() throws {
        let kubectl = try which("kubectl")
        let running = try cluster()
        defer { running.stop() }
        let kubeconfig = running.directory.file("kubeconfig")
        let plain = try runProcess(kubectl, ["get", "pkis", "-n", "app1", "--kubeconfig", kubeconfig])
        #expect(plain.status == 0, "\(plain.output)")
        let header = plain.stdout.split(separator: "\n").first.map { $0.split(separator: " ").map(String.init) } ?? []
        #expect(header == ["NAME", "READY", "SECRET", "EXPIRES", "AGE"], "\(plain.output)")
        let wide = try runProcess(kubectl, ["get", "pkis", "-n", "app1", "-o", "wide", "--kubeconfig", kubeconfig])
        #expect(wide.status == 0, "\(wide.output)")
        let lines = wide.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first?.split(separator: " ").map(String.init) == ["NAME", "READY", "SECRET", "EXPIRES", "AGE", "REASON", "STATUS"], "\(wide.output)")
        let web = lines.first { $0.hasPrefix("web ") } ?? ""
        #expect(web.contains(" True ") && web.contains(" Issued ") && web.contains("Certificate is valid until"), "\(wide.output)")
        let typo = lines.first { $0.hasPrefix("typo ") } ?? ""
        #expect(typo.contains(" False ") && typo.contains(" InvalidSpec ") && typo.contains("spec.serviceName: \"appp1\""), "\(wide.output)")
    }
}
