import CertgateJSON
import CertgatePKI
import CertgateYAML
import Foundation
import Testing

/// The CRD's schema and the Swift type must name the same spec fields: a real API server
/// prunes what the schema does not declare (and kubectl's strict field validation refuses
/// it), so a field only the type knows is silently never set.
@Suite struct CRDSchemaTests {
    private let crd = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../charts/certgate/files/pkis.certgate.dev.yaml").standardized.path

    /// A spec with every field set, so every key the type knows appears in its encoding.
    private let everyField = PkiSpec(serviceName: "app1", secretName: "app1-tls", commonName: "app1.app1.svc", dnsNames: ["app1.app1.svc"],
                                     ipAddresses: ["10.0.0.1"], duration: "2160h", renewBefore: "720h",
                                     privateKey: PrivateKeySpec(algorithm: "RSA", size: 2048), usages: ["server auth"],
                                     issuer: "default", rotationPolicy: "Never",
                                     secretTemplate: SecretTemplate(labels: ["team": "payments"], annotations: ["example.com/note": "x"]),
                                     keystores: KeystoresSpec(pkcs12: PKCS12Spec(passwordSecretRef: SecretKeySelector(name: "pw", key: "password"),
                                                                                 profile: "Modern2023"),
                                                              combinedPEM: EmptySpec(), der: EmptySpec()),
                                     uris: ["spiffe://cluster.local/ns/app1/sa/app1"], emailAddresses: ["ops@example.com"],
                                     subject: SubjectSpec(organizations: ["Example"], organizationalUnits: ["Platform"], countries: ["DE"],
                                                          localities: ["Berlin"], provinces: ["Berlin"]))

    private func declaredProperties(_ path: [String]) throws -> Set<String> {
        let text = try String(contentsOfFile: crd, encoding: .utf8)
        var node = try #require(try YAML.document(in: text))
        for key in ["spec", "versions"] { node = try #require(node[key]) }
        node = try #require(node.sequence?.first?["schema"]?["openAPIV3Schema"])
        for key in path { node = try #require(node["properties"]?[key]) }
        return Set(try #require(node["properties"]?.mapping).compactMap { $0.key.string })
    }

    @Test func everySpecFieldTheTypeReadsIsDeclared() throws {
        let encoded = try JSONSerialization.jsonObject(with: JSONEncoder().encode(everyField)) as? [String: Any] ?? [:]
        let declared = try declaredProperties(["spec"])
        #expect(Set(encoded.keys).subtracting(declared).isEmpty, "not in the CRD: \(Set(encoded.keys).subtracting(declared).sorted())")
        #expect(declared.subtracting(encoded.keys).isEmpty, "not read by PkiSpec: \(declared.subtracting(encoded.keys).sorted())")
        let key = encoded["privateKey"] as? [String: Any] ?? [:]
        #expect(Set(key.keys) == (try declaredProperties(["spec", "privateKey"])))
        let template = encoded["secretTemplate"] as? [String: Any] ?? [:]
        #expect(Set(template.keys) == (try declaredProperties(["spec", "secretTemplate"])))
        #expect(Set((encoded["subject"] as? [String: Any] ?? [:]).keys) == (try declaredProperties(["spec", "subject"])))
        let keystores = encoded["keystores"] as? [String: Any] ?? [:]
        #expect(Set(keystores.keys) == (try declaredProperties(["spec", "keystores"])))
        #expect(Set((keystores["pkcs12"] as? [String: Any] ?? [:]).keys) == (try declaredProperties(["spec", "keystores", "pkcs12"])))
    }

    @Test func theWebhookReadsTheSameFieldsAsTheReconciler() throws {
        var document: [UInt8] = Array(#"{"apiVersion":"certgate.dev/v1","kind":"Pki","metadata":{"name":"x","namespace":"app1"},"spec":"#.utf8)
        document += try JSONEncoder().encode(everyField)
        document += Array("}".utf8)
        let pki = try JSONReader.read(document) { reader in try Pki(reading: &reader) }
        #expect(pki.spec == everyField)
        #expect(pki.problems.isEmpty)
    }
}
