import CertgateKube
import CertgateKubeTesting
import CertgatePKI
import CertgateTestSupport
import Foundation
import Testing

@Suite struct ReconcileCommandTests {
    @Test func serveReconcilesAgainstAClusterAndReleasesItsLeaseOnSIGTERM() throws {
        let api = try TestAPIServer()
        defer { api.stop() }
        let directory = TemporaryDirectory()
        try api.writeKubeconfig(to: directory.file("kubeconfig"))
        let client = try KubeClient(configuration: api.clusterConfiguration())
        _ = try client.create(.pkis, namespace: "app1", PkiResource(metadata: ObjectMeta(name: "app1-pki", namespace: "app1"),
                                                                    spec: PkiSpec(serviceName: "app1", dnsNames: ["app1.app1.svc"])))

        let server = Process()
        server.executableURL = URL(fileURLWithPath: certgateBinary)
        server.arguments = ["serve", "--address", "127.0.0.1", "--port", String(freePort()), "--metrics-address", "0",
                            "--tls-cert-file", api.pki.certificateFile, "--tls-key-file", api.pki.keyFile,
                            "--kubeconfig", directory.file("kubeconfig"), "--bootstrap-ca", "--leader-elect-resource-namespace", "certgate",
                            "--leader-elect-resource-name", "canary-leader", "--log-format", "json"]
        let log = Pipe()
        server.standardError = log
        server.standardOutput = FileHandle.nullDevice
        try server.run()
        defer { if server.isRunning { server.terminate() } }

        let deadline = Date().addingTimeInterval(30)
        var ready = false
        while !ready && Date() < deadline {
            ready = (try? client.get(.pkis, namespace: "app1", name: "app1-pki", as: PkiResource.self))?
                .status?.conditions?.contains { $0.type == "Ready" && $0.status == "True" } == true
            if !ready { Thread.sleep(forTimeInterval: 0.1) }
        }
        #expect(ready, "the Pki became Ready through the binary's reconciler")
        #expect(api.object(.secrets, namespace: "app1", name: "app1-pki") != nil)
        #expect(try client.get(.leases, namespace: "certgate", name: "canary-leader", as: Lease.self).spec?.holderIdentity?.isEmpty == false)
        #expect(api.object(.leases, namespace: "certgate", name: "certgate-leader") == nil, "only the Lease it was given")

        kill(server.processIdentifier, SIGTERM)
        server.waitUntilExit()
        #expect(server.terminationStatus == 0)
        #expect(try client.get(.leases, namespace: "certgate", name: "canary-leader", as: Lease.self).spec?.holderIdentity == "",
                "the Lease is released for the next replica")
        let lines = String(decoding: log.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(lines.contains("\"msg\":\"reconciler started (leader)\""), "\(lines)")
    }

    @Test func withoutAClusterServeRunsTheWebhookAloneAndSaysSoOnce() throws {
        let home = TemporaryDirectory()
        let pki = try TestPKI(in: home)
        let port = freePort()
        let server = Process()
        server.executableURL = URL(fileURLWithPath: certgateBinary)
        server.arguments = ["serve", "--address", "127.0.0.1", "--port", String(port), "--metrics-address", "0",
                            "--tls-cert-file", pki.certificateFile, "--tls-key-file", pki.keyFile]
        server.environment = childEnvironment(["HOME": home.path, "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin"])
        let log = Pipe()
        server.standardError = log
        server.standardOutput = FileHandle.nullDevice
        try server.run()
        defer { if server.isRunning { server.terminate() } }
        var ready = ""
        let deadline = Date().addingTimeInterval(20)
        while ready != "ok\n" && Date() < deadline {
            ready = try runProcess("curl", ["-sS", "--max-time", "2", "--cacert", pki.caFile, "https://127.0.0.1:\(port)/readyz"]).stdout
            if ready != "ok\n" { Thread.sleep(forTimeInterval: 0.1) }
        }
        #expect(ready == "ok\n", "ready without a cluster: the webhook serves")
        kill(server.processIdentifier, SIGTERM)
        server.waitUntilExit()
        let lines = String(decoding: log.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(lines.components(separatedBy: "no cluster configuration found; serving the webhook only").count == 2, "\(lines)")
    }
}
