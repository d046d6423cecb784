import CertgateHTTP
import CertgateKube
import CertgateTestSupport
import Foundation
import Testing

/// A kubeconfig with two contexts: one with inline (base64) CA and client certificate,
/// one with files relative to the kubeconfig and a token.
func writeKubeconfig(_ directory: TemporaryDirectory, _ pki: TestPKI, server: String, insecure: Bool = false) throws -> String {
    let ca = try Data(contentsOf: URL(fileURLWithPath: pki.caFile)).base64EncodedString()
    let certificate = try Data(contentsOf: URL(fileURLWithPath: pki.clientCertificateFile)).base64EncodedString()
    let key = try Data(contentsOf: URL(fileURLWithPath: pki.clientKeyFile)).base64EncodedString()
    try FileManager.default.createDirectory(atPath: directory.file("kube/certs"), withIntermediateDirectories: true)
    try FileManager.default.copyItem(atPath: pki.caFile, toPath: directory.file("kube/certs/ca.crt"))
    let text = """
        apiVersion: v1
        kind: Config
        current-context: inline
        clusters:
        - name: inline
          cluster:
            server: \(server)
            \(insecure ? "insecure-skip-tls-verify: true" : "certificate-authority-data: \(ca)")
        - name: files
          cluster:
            server: \(server)
            certificate-authority: certs/ca.crt
        contexts:
        - name: inline
          context: {cluster: inline, user: admin}
        - name: files
          context: {cluster: files, user: robot, namespace: team-a}
        users:
        - name: admin
          user:
            client-certificate-data: \(certificate)
            client-key-data: \(key)
        - name: robot
          user:
            token: s3cr3t
        """
    try text.write(toFile: directory.file("kube/config"), atomically: true, encoding: .utf8)
    return directory.file("kube/config")
}

@Suite struct ClusterConfigurationTests {
    @Test func readsTheCurrentContextWithInlineCredentials() throws {
        let directory = TemporaryDirectory()
        let pki = try TestPKI(in: directory)
        let path = try writeKubeconfig(directory, pki, server: "https://127.0.0.1:6443")
        let configuration = try ClusterConfigurationLoader.kubeconfig(path: path)
        #expect(configuration.host == "127.0.0.1")
        #expect(configuration.port == 6443)
        #expect(configuration.tls.trustRoots?.first?.commonName == "test CA")
        #expect(configuration.tls.clientCertificateChain?.first?.commonName == "kube-apiserver")
        #expect(configuration.tls.clientKey != nil)
        #expect(configuration.token == nil)
        #expect(configuration.source == "kubeconfig \(path), context inline")
        #expect(configuration.namespace == nil, "the context names no namespace")
    }

    @Test func readsFilesRelativeToTheKubeconfigAndATokenForANamedContext() throws {
        let directory = TemporaryDirectory()
        let pki = try TestPKI(in: directory)
        let path = try writeKubeconfig(directory, pki, server: "https://[::1]")
        let configuration = try ClusterConfigurationLoader.kubeconfig(path: path, context: "files")
        #expect(configuration.host == "::1")
        #expect(configuration.port == 443)
        #expect(configuration.tls.trustRoots?.count == 1)
        #expect(try configuration.token?.current() == "s3cr3t")
        #expect(configuration.namespace == "team-a", "kubectl's default namespace for the context")
    }

    @Test func insecureSkipVerifyIsRefusedUnlessAllowed() throws {
        let directory = TemporaryDirectory()
        let path = try writeKubeconfig(directory, try TestPKI(in: directory), server: "https://10.0.0.1:6443", insecure: true)
        #expect(throws: ClusterConfigurationError("cluster inline in \(path) sets insecure-skip-tls-verify; refused unless --allow-insecure-kubeconfig is given")) {
            try ClusterConfigurationLoader.kubeconfig(path: path)
        }
        #expect(try ClusterConfigurationLoader.kubeconfig(path: path, allowInsecure: true).tls.insecureSkipVerify)
    }

    @Test func mistakesAreNamed() throws {
        let directory = TemporaryDirectory()
        let path = try writeKubeconfig(directory, try TestPKI(in: directory), server: "https://127.0.0.1:6443")
        #expect(throws: ClusterConfigurationError("the kubeconfig \(path) has no context named \"prod\"")) {
            try ClusterConfigurationLoader.kubeconfig(path: path, context: "prod")
        }
        #expect(throws: ClusterConfigurationError("cannot read the kubeconfig /nonexistent/config")) {
            try ClusterConfigurationLoader.kubeconfig(path: "/nonexistent/config")
        }
        #expect(throws: ClusterConfigurationError("no Kubernetes configuration found: pass --kubeconfig, set KUBECONFIG, run in a cluster (KUBERNETES_SERVICE_HOST and a service account), or create ~/.kube/config", reason: .noConfigurationFound)) {
            try ClusterConfigurationLoader.load(environment: ["HOME": directory.path])
        }
    }

    @Test func followsClientGosOrder() throws {
        let directory = TemporaryDirectory()
        let path = try writeKubeconfig(directory, try TestPKI(in: directory), server: "https://127.0.0.1:6443")
        #expect(try ClusterConfigurationLoader.load(environment: ["KUBECONFIG": "/missing:\(path)"]).source.hasPrefix("kubeconfig \(path)"))
        try FileManager.default.createDirectory(atPath: directory.file(".kube"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: path, toPath: directory.file(".kube/config"))
        try FileManager.default.createDirectory(atPath: directory.file(".kube/certs"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: directory.file("kube/certs/ca.crt"), toPath: directory.file(".kube/certs/ca.crt"))
        #expect(try ClusterConfigurationLoader.load(environment: ["HOME": directory.path]).source.hasPrefix("kubeconfig \(directory.path)/.kube/config"))
    }

    @Test func inClusterReadsTheServiceAccountAndItsRotatingToken() throws {
        let directory = TemporaryDirectory()
        let pki = try TestPKI(in: directory)
        let account = directory.file("serviceaccount")
        try FileManager.default.createDirectory(atPath: account, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: pki.caFile, toPath: "\(account)/ca.crt")
        try "first-token\n".write(toFile: "\(account)/token", atomically: true, encoding: .utf8)
        let environment = ["KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"]
        let configuration = try ClusterConfigurationLoader.load(environment: environment, serviceAccountDirectory: account)
        #expect(configuration.source == "in-cluster")
        #expect(configuration.host == "10.96.0.1")
        #expect(try configuration.token?.current() == "first-token")
        try "second-token\n".write(toFile: "\(account)/token", atomically: true, encoding: .utf8)
        #expect(try configuration.token?.current() == "first-token", "cached for a minute, as client-go does")
        #expect(try configuration.token?.current(refresh: true) == "second-token", "read again after a 401")
        #expect(throws: ClusterConfigurationError("in-cluster configuration needs KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT")) {
            try ClusterConfigurationLoader.inCluster(environment: ["KUBERNETES_SERVICE_HOST": "10.96.0.1"], directory: account)
        }
    }

    @Test func aKubeconfigClientTalksToATLSServerThatChecksClientCertificates() throws {
        let directory = TemporaryDirectory()
        let pki = try TestPKI(in: directory)
        let server = try LoopbackServer(pki: pki, requireClientCertificate: true)
        defer { server.stop() }
        let path = try writeKubeconfig(directory, pki, server: "https://localhost:\(server.port)")
        let client = try ClusterConfigurationLoader.kubeconfig(path: path).makeHTTPClient()
        let response = try client.send(HTTPRequest(method: "GET", path: "/healthz"))
        #expect(response.status == 200)
    }
}
