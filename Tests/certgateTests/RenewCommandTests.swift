import CertgateKube
import CertgateKubeTesting
import CertgatePKI
import CertgateTestSupport
import Foundation
import Testing

@Suite struct RenewCommandTests {
    /// `certgate renew -n NS NAME...` sets certgate.dev/renew to the time, as certgate-renew in
    /// managedFields, reading the kubeconfig as `serve` does; a missing Pki is named and fails.
    @Test func setsTheRenewAnnotationOnEachPkiNamed() throws {
        let api = try TestAPIServer()
        defer { api.stop() }
        let directory = TemporaryDirectory()
        try api.writeKubeconfig(to: directory.file("kubeconfig"), token: api.addClient("someone"))
        let client = try KubeClient(configuration: api.clusterConfiguration())
        for name in ["a", "b"] {
            _ = try client.create(.pkis, namespace: "app1", Pki(metadata: ObjectMeta(name: name, namespace: "app1"),
                                                                        spec: PkiSpec(serviceName: "app1", dnsNames: ["app1.app1.svc"])))
        }
        let result = try runProcess(certgateBinary, ["renew", "-n", "app1", "a", "b", "--kubeconfig", directory.file("kubeconfig")])
        #expect(result.status == 0, "\(result.output)")
        for name in ["a", "b"] {
            let pki = try client.get(.pkis, namespace: "app1", name: name, as: Pki.self)
            let value = try #require(pki.metadata.annotations?["certgate.dev/renew"])
            #expect(result.stdout.contains("pki app1/\(name): renewal requested (certgate.dev/renew=\(value))"))
            #expect(value.hasPrefix("20") && value.hasSuffix("Z"))
            let fields = try client.get(.pkis, namespace: "app1", name: name, as: ManagedFields.self)
            #expect(fields.manager(ofAnnotation: "certgate.dev/renew") == "certgate-renew")
        }

        let missing = try runProcess(certgateBinary, ["renew", "-n", "app1", "nope", "--kubeconfig", directory.file("kubeconfig")])
        #expect(missing.status != 0)
        #expect(missing.stderr.contains("certgate renew: pki app1/nope: not found"), "\(missing.output)")
    }
}
