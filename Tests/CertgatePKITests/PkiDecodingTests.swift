import CertgateJSON
import CertgatePKI
import Testing

@Suite struct PkiDecodingTests {
    @Test func readsEverySpecFieldAndSkipsTheRest() throws {
        let json = #"""
        {"apiVersion":"certgate.dev/v1","kind":"Pki",
         "metadata":{"name":"app1-pki","namespace":"app1","uid":"u-1","generation":3,"resourceVersion":"310",
                     "managedFields":[{"manager":"kubectl","fieldsV1":{"f:spec":{}}}],"annotations":{"a":"b"}},
         "spec":{"serviceName":"app1","secretName":"app1-tls","commonName":"app1.app1.svc",
                 "dnsNames":["app1.app1.svc","app1.app1.svc.cluster.local"],"ipAddresses":["10.0.0.1"],
                 "duration":"2160h","renewBefore":"720h","privateKey":{"algorithm":"ECDSA","size":256},
                 "usages":["server auth"],"issuer":"default","rotationPolicy":"Always","futureField":{"x":[1,2]}},
         "status":{"conditions":[]}}
        """#
        let pki = try JSONReader.read(Array(json.utf8)) { try Pki(reading: &$0) }
        #expect(pki.metadata == ObjectMeta(name: "app1-pki", namespace: "app1", uid: "u-1", generation: 3, resourceVersion: "310"))
        #expect(pki.spec == PkiSpec(serviceName: "app1", secretName: "app1-tls", commonName: "app1.app1.svc",
                                    dnsNames: ["app1.app1.svc", "app1.app1.svc.cluster.local"], ipAddresses: ["10.0.0.1"],
                                    duration: "2160h", renewBefore: "720h", privateKey: PrivateKeySpec(algorithm: "ECDSA", size: 256),
                                    usages: ["server auth"], issuer: "default", rotationPolicy: "Always"))
        #expect(pki.problems.isEmpty)
    }

    @Test func fieldsOfTheWrongTypeBecomeProblemsWithTheirPaths() throws {
        let json = #"{"spec":{"serviceName":7,"dnsNames":["a.svc",false,"b.svc"],"privateKey":{"size":"256"},"usages":"server auth","duration":null}}"#
        let pki = try JSONReader.read(Array(json.utf8)) { try Pki(reading: &$0) }
        #expect(pki.problems.map(\.description) == [
            "spec.serviceName: expected a string, found a number",
            "spec.dnsNames[1]: expected a string, found true or false",
            "spec.privateKey.size: expected an integer, found a string",
            "spec.usages: expected a list of strings, found a string",
        ])
        #expect(pki.spec.dnsNames == ["a.svc", "b.svc"])
        #expect(pki.spec.duration == nil)
        #expect(pki.spec.privateKey == PrivateKeySpec(algorithm: nil, size: nil))
    }

    @Test func aFractionalSizeIsAProblemNotARoundedValue() throws {
        let pki = try JSONReader.read(Array(#"{"spec":{"privateKey":{"algorithm":"RSA","size":2048.5}}}"#.utf8)) { try Pki(reading: &$0) }
        #expect(pki.problems.map(\.description) == ["spec.privateKey.size: expected an integer"])
        #expect(pki.spec.privateKey?.algorithm == "RSA")
    }
}
