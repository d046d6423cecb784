import CertgatePKI
import Testing

/// spec.uris, spec.emailAddresses and spec.subject, judged with field paths and did-you-mean.
@Suite struct IdentityRulesTests {
    private let policy = Policy(namespaces: ["app1": ["app1"]], namespaceURIPrefixes: ["app1": ["https://app1.example.com/"]],
                                organizations: ["Example GmbH"])

    private func violations(_ spec: PkiSpec) -> [String] {
        judge(Pki(metadata: ObjectMeta(name: "web", namespace: "app1"), spec: spec), namespace: "app1", policy: policy)
            .violations.map(\.description)
    }

    @Test func theWorkloadsOwnSPIFFEIDAndTheNamespacesPrefixesAreAllowed() {
        #expect(violations(PkiSpec(serviceName: "app1", uris: ["spiffe://cluster.local/ns/app1/sa/app1",
                                                               "https://app1.example.com/api", "spiffe://cluster.local/ns/app1/sa/app1/x"])) == [])
        #expect(violations(PkiSpec(serviceName: "app1", uris: ["spiffe://cluster.local/ns/app1/sa/app10"])) == [
            #"spec.uris[0]: "spiffe://cluster.local/ns/app1/sa/app10" is not under an allowed prefix [https://app1.example.com/ spiffe://cluster.local/ns/app1/sa/app1] for namespace app1 (did you mean "spiffe://cluster.local/ns/app1/sa/app1"?)"#,
        ], "a prefix allows what continues it past '/', never a longer name")
        #expect(violations(PkiSpec(serviceName: "app1", uris: ["spiffe://cluster.local/ns/app2/sa/app1"])).first?
            .contains("is not under an allowed prefix") == true, "another namespace's identity")
        #expect(violations(PkiSpec(serviceName: "app1", uris: ["app1.app1.svc", "spiffe://x y"])) == [
            #"spec.uris[0]: "app1.app1.svc" is not a URI: it has no scheme; write it in full, such as spiffe://cluster.local/ns/app1/sa/app1"#,
            #"spec.uris[1]: "spiffe://x y" is not a URI: it has a space; percent-encode it as %20"#,
        ])
    }

    @Test func emailAddressesAndTheSubjectAreJudgedByField() {
        #expect(violations(PkiSpec(serviceName: "app1", emailAddresses: ["ops@example.com", "ops", "a b@example.com"],
                                   subject: SubjectSpec(organizations: ["Example GmbH", "Exmple GmbH"], organizationalUnits: [""],
                                                        countries: ["DE", "Germany"]))) == [
            #"spec.emailAddresses[1]: "ops" is not an email address: write it as name@domain"#,
            #"spec.emailAddresses[2]: "a b@example.com" is not an email address: the part before '@' may hold only letters, digits and !#$%&'*+-/=?^_`{|}~."#,
            #"spec.subject.organizations[1]: "Exmple GmbH" is not an allowed organization ["Example GmbH"] (did you mean "Example GmbH"?)"#,
            #"spec.subject.countries[1]: "Germany" is not a country code; use the two capital letters of ISO 3166, such as DE or US"#,
            "spec.subject.organizationalUnits[0]: empty; remove it or give it a value",
        ])
    }

    @Test func aURIAloneNamesTheCertificate() {
        #expect(violations(PkiSpec(serviceName: "app1", uris: ["spiffe://cluster.local/ns/app1/sa/app1"])) == [])
        #expect(violations(PkiSpec(serviceName: "app1")) == ["spec: at least one of commonName, dnsNames, ipAddresses, uris or emailAddresses is required"])
    }
}
