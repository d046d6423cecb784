import CertgateManifests
import CertgatePKI
import Foundation
import Testing

let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../examples").standardized.path

@Suite struct PolicyFileTests {
    @Test func theExampleParsesAndEqualsTheBuiltInDefault() throws {
        let example = try PolicyFile.load(path: "\(examples)/policy.yaml")
        #expect(example == (try PolicyFile.parse(PolicyFile.builtInDefault)))
        #expect(example.allowedServiceNames(in: "app1") == ["app1", "app2"])
        #expect(example.dnsSuffixes == [".svc", ".svc.cluster.local"])
        #expect(example.ipRanges.map(\.description) == ["10.0.0.0/8", "fd00::/8"])
        #expect(example.maximumDuration == 8760 * 3600.0)
        #expect(example.issuers["default"] == SecretReference(namespace: "certgate", name: "certgate-ca"))
    }

    @Test func keysLeftOutKeepTheirDefaults() throws {
        let policy = try PolicyFile.parse("namespaces:\n  app1: [app1]\n")
        #expect(policy.dnsSuffixes == [".svc", ".svc.cluster.local"])
        #expect(policy.issuers == Policy().issuers)
        #expect(policy.maximumDuration == Policy().maximumDuration)
    }

    @Test(arguments: [
        ("namespace:\n  app1: [app1]\n", "unknown key \"namespace\" (did you mean \"namespaces\"?); known keys are [serviceNames namespaces dnsSuffixes ipRanges duration privateKeys issuers defaultIssuer uriPrefixes namespaceURIPrefixes organizations]"),
        ("duration: {maximum: 1y}\n", "duration.maximum: \"1y\" is not a duration such as 2160h, 90m or 1h30m"),
        // Once a trap: past Int.max seconds, formatting the default for a message overflowed.
        ("duration: {default: 99999999999999999999999h}\n",
         "duration.default: \"99999999999999999999999h\" is not a duration such as 2160h, 90m or 1h30m"),
        ("duration: {minimum: 10h, maximum: 1h, default: 5h}\n", "duration.minimum 10h is longer than duration.maximum 1h"),
        ("ipRanges: [10.0.0.0]\n", "ipRanges[0]: \"10.0.0.0\" is not a CIDR range such as 10.0.0.0/8 or fd00::/8"),
        ("namespaces: [app1]\n", "namespaces: expected a mapping of keys to values"),
        ("serviceNames: [a\n", "not valid YAML: did not find expected ',' or ']' at line 2, column 1"),
        ("", "the file is empty"),
        ("privateKeys: {algorithms: [DSA]}\n", "privateKeys.algorithms: \"DSA\" is not one of [ECDSA RSA Ed25519]"),
        ("issuers:\n  main: {secretName: ca}\n", "issuers.main: needs secretNamespace and secretName"),
        ("uriPrefixes: [\"cluster.local/{namespace}\"]\n",
         "uriPrefixes: \"cluster.local/{namespace}\" is not a URI with a scheme, such as spiffe://cluster.local/ns/{namespace}/sa/{serviceName}"),
        ("namespaceURIPrefixes:\n  app1: [\"spiffe://x/{name}\"]\n",
         "uriPrefixes: \"spiffe://x/{name}\" has a placeholder other than {namespace} and {serviceName}"),
    ])
    func aPolicyThatDoesNotMakeSenseSaysWhere(_ text: String, _ message: String) {
        #expect { try PolicyFile.parse(text) } throws: { "\($0)" == message }
    }
}

@Suite struct ManifestTests {
    @Test func readsEveryPkiOfAMultiDocumentFileAndListsAndKeepsYAMLTypes() throws {
        let text = """
            apiVersion: v1
            kind: ConfigMap
            metadata: {name: other}
            ---
            apiVersion: certgate.dev/v1
            kind: Pki
            metadata: {name: one, namespace: app1}
            spec:
              serviceName: app1
              dnsNames: [app1.app1.svc]
              privateKey: {algorithm: RSA, size: "2048"}
            ---
            apiVersion: v1
            kind: List
            items:
            - {apiVersion: certgate.dev/v1, kind: Pki, metadata: {name: two}, spec: {serviceName: app2, duration: 2160h}}
            """
        let objects = try Manifests.objects(in: text)
        #expect(objects.map(\.kind) == ["ConfigMap", "Pki", "Pki"])
        let pkis = try objects.filter(\.isPki).map { try $0.pki() }
        #expect(pkis.map(\.metadata.name) == ["one", "two"])
        #expect(pkis[0].spec.privateKey?.algorithm == "RSA")
        #expect(pkis[0].problems.map(\.description) == ["spec.privateKey.size: expected an integer, found a string"],
                "a quoted number stays a string, as the API server would refuse it")
        #expect(pkis[1].spec.duration == "2160h")
        #expect(pkis[1].metadata.namespace == nil)
    }

    @Test func theExampleManifestsAreJudgedAsTheWebhookJudgesThem() throws {
        let policy = try PolicyFile.load(path: "\(examples)/policy.yaml")
        let good = try Manifests.objects(in: String(contentsOfFile: "\(examples)/pki-app1.yaml", encoding: .utf8))[0].pki()
        #expect(judge(good, namespace: "app1", policy: policy) == Judgement())
        let typo = try Manifests.objects(in: String(contentsOfFile: "\(examples)/pki-typo.yaml", encoding: .utf8))[0].pki()
        let judgement = judge(typo, namespace: "app1", policy: policy)
        #expect(judgement.message == "spec.serviceName: \"appp1\" is not in the allowed names [app1 app2] for namespace app1 (did you mean \"app1\"?)")
        #expect(judgement.warnings == ["spec.duration: 8760h is longer than the recommended 2160h"])
    }

    @Test func brokenYAMLSaysWhere() {
        #expect { try Manifests.objects(in: "kind: Pki\nspec: [unclosed\n") } throws: { "\($0)".hasPrefix("not valid YAML: ") && "\($0)".contains("line") }
    }
}

@Suite struct ManifestFieldTests {
    /// The line a finding points at: the field's key or list item, or for a missing field the
    /// nearest one enclosing it; in YAML, in JSON, and inside a List's items.
    @Test func findsTheLineOfARulesFieldPath() throws {
        let yaml = """
            apiVersion: v1
            kind: List
            items:
            - apiVersion: certgate.dev/v1
              kind: Pki
              metadata: {name: a}
              spec:
                dnsNames:
                - one.app1.svc
                - two.app1.svc
                privateKey:
                  size: 512
                secretTemplate:
                  labels:
                    app.kubernetes.io/name: "-web"
            """
        let object = try #require(try Manifests.objects(in: yaml).first)
        #expect(object.field(at: "spec.dnsNames[1]") == (10, "two.app1.svc"))
        #expect(object.field(at: "spec.privateKey.size") == (12, "512"))
        #expect(object.field(at: "spec.serviceName") == (7, nil), "missing: the line of spec")
        #expect(object.field(at: "spec.dnsNames[7]") == (8, nil), "past the list: the list's line")
        #expect(object.field(at: "spec").line == 7)
        #expect(object.field(at: "spec.secretTemplate.labels[app.kubernetes.io/name]") == (15, "-web"), "a map key with dots")

        let json = "{\"apiVersion\": \"certgate.dev/v1\", \"kind\": \"Pki\",\n \"spec\": {\n  \"dnsNames\": [\"a\",\n   \"b\"]}}"
        let fromJSON = try #require(try Manifests.objects(in: json).first)
        #expect(fromJSON.field(at: "spec.dnsNames[1]") == (4, "b"))
    }
}
