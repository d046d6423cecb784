import CertgatePKI
import CertgateTestSupport
import Foundation
import Testing

let examples = "\(repositoryRoot)/examples"

@Suite struct AdmissionEndToEndTests {
    @Test func theServerJudgesTheExampleReviewsOverHTTP1AndHTTP2AndReloadsItsPolicy() throws {
        let directory = TemporaryDirectory()
        let pki = try TestPKI(in: directory)
        let policyFile = directory.file("policy.yaml")
        try String(contentsOfFile: "\(examples)/policy.yaml", encoding: .utf8).write(toFile: policyFile, atomically: true, encoding: .utf8)
        let (port, metricsPort) = (freePort(), freePort())
        let server = Process()
        server.executableURL = URL(fileURLWithPath: certgateBinary)
        server.arguments = ["serve", "--address", "127.0.0.1", "--port", String(port), "--metrics-address", "127.0.0.1:\(metricsPort)",
                            "--tls-cert-file", pki.certificateFile, "--tls-key-file", pki.keyFile, "--policy", policyFile,
                            "--certificate-check-interval", "200ms"]
        let log = Pipe()
        server.standardError = log
        server.standardOutput = FileHandle.nullDevice
        try server.run()
        defer { server.terminate(); server.waitUntilExit() }
        _ = try waitForHTTP("http://127.0.0.1:\(metricsPort)/readyz") { $0.hasSuffix("200") }

        func review(_ file: String, _ version: String) throws -> [String: Any] {
            let result = try runProcess("curl", ["-sS", "--max-time", "5", version, "--cacert", pki.caFile, "-H", "Content-Type: application/json",
                                                 "--data-binary", "@\(file)", "https://localhost:\(port)/validate?timeout=10s"])
            let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as! [String: Any]
            #expect(object["apiVersion"] as? String == "admission.k8s.io/v1")
            #expect(object["kind"] as? String == "AdmissionReview")
            return object["response"] as! [String: Any]
        }
        for version in ["--http1.1", "--http2"] {
            let good = try review("\(examples)/admissionreview-app1.json", version)
            #expect(good["uid"] as? String == "522867d8-89c7-4b99-97a2-c6e90977f336")
            #expect(good["allowed"] as? Bool == true)
            let typo = try review("\(examples)/admissionreview-typo.json", version)
            #expect(typo["uid"] as? String == "a2118f23-240c-450b-a479-ea05ed4b9bf0")
            #expect(typo["allowed"] as? Bool == false)
            let status = typo["status"] as? [String: Any]
            #expect(status?["code"] as? Int == 403)
            #expect(status?["reason"] as? String == "Forbidden")
            #expect(status?["message"] as? String == "spec.serviceName: \"appp1\" is not in the allowed names [app1 app2] for namespace app1 (did you mean \"app1\"?)")
            #expect(typo["warnings"] as? [String] == ["spec.duration: 8760h is longer than the recommended 2160h"])
        }

        let counted = try runProcess("curl", ["-sS", "http://127.0.0.1:\(metricsPort)/metrics"]).stdout
        #expect(counted.contains("certgate_admission_reviews_total{operation=\"CREATE\",decision=\"denied\"} 2\n"), "\(counted)")
        #expect(counted.contains("certgate_admission_reviews_total{operation=\"CREATE\",decision=\"allowed\"} 2\n"))
        let release = try chartAppVersion()
        #expect(counted.contains("certgate_build_info{version=\"\(release)\"} 1\n"), "\(counted)")

        // A broken policy keeps the last good one in force and says why.
        try "namespaces:\n  app1: [app1, app2\n".write(toFile: policyFile, atomically: true, encoding: .utf8)
        _ = try waitForHTTP("http://127.0.0.1:\(metricsPort)/metrics") { $0.contains("certgate_policy_reloads_total{result=\"failure\"} 1") }
        #expect(try review("\(examples)/admissionreview-app1.json", "--http2")["allowed"] as? Bool == true)

        // A good one takes over: appp1 is now allowed.
        try "namespaces:\n  app1: [app1, appp1]\nduration: {maximum: 8760h}\n".write(toFile: policyFile, atomically: true, encoding: .utf8)
        _ = try waitForHTTP("http://127.0.0.1:\(metricsPort)/metrics") { $0.contains("certgate_policy_reloads_total{result=\"success\"} 2") }
        let now = try review("\(examples)/admissionreview-typo.json", "--http1.1")
        #expect(now["allowed"] as? Bool == true, "\(now)")

        server.terminate()
        server.waitUntilExit()
        let lines = String(decoding: log.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(lines.contains("policy not loaded; keeping the one in force"), "\(lines)")
        #expect(lines.contains("did not find expected ',' or ']'"))
    }
}

@Suite struct HostileClientTests {
    /// A chunk size of 24 hex digits used to overflow the size computation and trap, taking
    /// down the whole process (and with failurePolicy Fail, every Pki write in the cluster).
    @Test func anOverflowingChunkSizeIsRefusedAndTheNextReviewIsJudged() throws {
        let directory = TemporaryDirectory()
        let pki = try TestPKI(in: directory)
        let (port, metricsPort) = (freePort(), freePort())
        let server = Process()
        server.executableURL = URL(fileURLWithPath: certgateBinary)
        server.arguments = ["serve", "--address", "127.0.0.1", "--port", String(port), "--metrics-address", "127.0.0.1:\(metricsPort)",
                            "--tls-cert-file", pki.certificateFile, "--tls-key-file", pki.keyFile, "--policy", "\(examples)/policy.yaml"]
        server.standardError = FileHandle.nullDevice
        server.standardOutput = FileHandle.nullDevice
        try server.run()
        defer { server.terminate(); server.waitUntilExit() }
        _ = try waitForHTTP("http://127.0.0.1:\(metricsPort)/readyz") { $0.hasSuffix("200") }

        let attack = try rawClient(["h1", "--port", String(port), "--ca", pki.caFile,
                                    "send:POST /validate HTTP/1.1\\r\\nHost: localhost\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n"
                                        + "ffffffffffffffffffffffff\\r\\n...\\r\\n", "recv"])
        let answer = attack["responses"] as? String ?? ""
        #expect(answer.hasPrefix("HTTP/1.1 413 Content Too Large\r\n"), "\(attack)")
        #expect(answer.contains("chunk size too large"), "\(answer)")
        #expect(server.isRunning)

        let result = try runProcess("curl", ["-sS", "--max-time", "5", "--http1.1", "--cacert", pki.caFile, "-H", "Content-Type: application/json",
                                             "--data-binary", "@\(examples)/admissionreview-typo.json", "https://localhost:\(port)/validate?timeout=10s"])
        let review = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        let response = review?["response"] as? [String: Any]
        #expect(response?["uid"] as? String == "a2118f23-240c-450b-a479-ea05ed4b9bf0", "\(result.output)")
        #expect(response?["allowed"] as? Bool == false)
    }
}

@Suite struct ValidateCommandTests {
    @Test func judgesADirectoryAndExitsOneOnADenial() throws {
        let result = try runProcess(certgateBinary, ["validate", "-f", examples, "--policy", "\(examples)/policy.yaml"])
        #expect(result.status == 1, "\(result.output)")
        #expect(result.stdout == """
            \(examples)/pki-typo.yaml: app1/appp1-pki: spec.serviceName: "appp1" is not in the allowed names [app1 app2] for namespace app1 (did you mean "app1"?)
            \(examples)/pki-typo.yaml: app1/appp1-pki: warning: spec.duration: 8760h is longer than the recommended 2160h

            """)
        #expect(result.stderr.contains("certgate validate: 2 Pkis judged, 1 denied, 1 warning"))
    }

    /// --output json: one object per line and finding, with the line of the field in the file.
    @Test func jsonOutputIsOneObjectPerFindingWithItsLine() throws {
        let result = try runProcess(certgateBinary, ["validate", "-f", "\(examples)/pki-typo.yaml", "--policy", "\(examples)/policy.yaml",
                                                     "--output", "json"])
        #expect(result.status == 1, "\(result.output)")
        let findings = try result.stdout.split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        #expect(findings.count == 2)
        let error = try #require(findings.first)
        #expect(error["file"] as? String == "\(examples)/pki-typo.yaml")
        #expect(error["document"] as? Int == 1)
        #expect(error["namespace"] as? String == "app1")
        #expect(error["name"] as? String == "appp1-pki")
        #expect(error["field"] as? String == "spec.serviceName")
        #expect(error["value"] as? String == "appp1")
        #expect(error["severity"] as? String == "error")
        #expect((error["message"] as? String)?.hasSuffix("(did you mean \"app1\"?)") == true)
        let lines = try String(contentsOfFile: "\(examples)/pki-typo.yaml", encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
        let line = try #require(error["line"] as? Int)
        #expect(lines[line - 1].contains("serviceName: appp1"), "line \(line) is the field's")
        #expect(findings.last?["severity"] as? String == "warning")
        #expect(findings.last?["field"] as? String == "spec.duration")
    }

    /// --output github: workflow commands on the field's line, with GitHub's escaping.
    @Test func githubOutputAnnotatesTheLineOfEachField() throws {
        let directory = TemporaryDirectory()
        let manifest = """
            apiVersion: certgate.dev/v1
            kind: Pki
            metadata: {name: web, namespace: app1}
            spec:
              serviceName: app1
              dnsNames:
                - app1.app1.svc
                - "50%,off.example.com"
              privateKey:
                algorithm: ECDSA
                size: 512

            """
        try manifest.write(toFile: directory.file("web.yaml"), atomically: true, encoding: .utf8)
        let result = try runProcess(certgateBinary, ["validate", "-f", directory.file("web.yaml"), "--output", "github"])
        #expect(result.status == 1, "\(result.output)")
        let file = directory.file("web.yaml").replacingOccurrences(of: ":", with: "%3A").replacingOccurrences(of: ",", with: "%2C")
        let lines = result.stdout.split(separator: "\n").map(String.init)
        #expect(lines.count == 2, "\(lines)")
        #expect(lines.first?.hasPrefix("::error file=\(file),line=8,title=Pki app1/web::spec.dnsNames[1]: \"50%25,off.example.com\" is not a valid DNS name") == true,
                "\(lines)")
        #expect(lines.last?.hasPrefix("::error file=\(file),line=11,title=Pki app1/web::spec.privateKey.size: 512 is not an ECDSA size") == true,
                "\(lines)")
    }

    /// Findings on stdout and the summary on stderr, both to one pipe (as CI logs are):
    /// the summary comes last, after every finding.
    @Test func findingsAndTheSummaryKeepTheirOrderInOnePipe() throws {
        let result = try runProcess("/bin/sh", ["-c", "exec \"$0\" validate -f \"$1\" --policy \"$1/policy.yaml\" 2>&1", certgateBinary, examples])
        let lines = result.stdout.split(separator: "\n").map(String.init)
        #expect(lines.count == 3, "\(result.output)")
        #expect(lines.last?.hasPrefix("certgate validate: 2 Pkis judged") == true, "\(lines)")
        #expect(lines.first?.contains("spec.serviceName") == true)
    }

    @Test func exitsZeroWhenEveryPkiPassesAndReadsStandardInput() throws {
        let manifest = try String(contentsOfFile: "\(examples)/pki-app1.yaml", encoding: .utf8)
        let result = try runProcess(certgateBinary, ["validate", "-f", "-"], input: manifest + "---\napiVersion: v1\nkind: Service\nmetadata: {name: x}\n")
        #expect(result.status == 0, "\(result.output)")
        #expect(result.stdout.isEmpty)
        #expect(result.stderr.contains("1 Pki judged, 0 denied, 0 warnings"))
    }

    @Test func unreadableInputExitsTwo() throws {
        let directory = TemporaryDirectory()
        try "kind: Pki\nspec: [unclosed\n".write(toFile: directory.file("broken.yaml"), atomically: true, encoding: .utf8)
        let broken = try runProcess(certgateBinary, ["validate", "-f", directory.file("broken.yaml")])
        #expect(broken.status == 2)
        #expect(broken.stderr.contains("broken.yaml: not valid YAML: "), "\(broken.output)")
        let missing = try runProcess(certgateBinary, ["validate", "-f", directory.file("missing.yaml")])
        #expect(missing.status == 2)
        #expect(missing.stderr.contains("missing.yaml: cannot read it"))
        let badPolicy = try runProcess(certgateBinary, ["validate", "-f", "\(examples)/pki-app1.yaml", "--policy", directory.file("broken.yaml")])
        #expect(badPolicy.status == 2)
    }

    @Test func objectsWithoutANamespaceUseTheFlag() throws {
        let manifest = "apiVersion: certgate.dev/v1\nkind: Pki\nmetadata: {name: x}\nspec: {serviceName: app1, dnsNames: [x.svc]}\n"
        let result = try runProcess(certgateBinary, ["validate", "-f", "-", "--namespace", "app1"], input: manifest)
        #expect(result.status == 0, "\(result.output)")
        let other = try runProcess(certgateBinary, ["validate", "-f", "-"], input: manifest)
        #expect(other.status == 1)
        #expect(other.stdout.hasPrefix("<stdin>: default/x: spec.serviceName: \"app1\" is not allowed: the policy allows no service names for namespace default"))
    }
}
