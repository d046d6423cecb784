import CertgateJSON
import CertgateKube
import CertgatePKI
import Foundation
import Testing

/// The wire recorded from kube-apiserver 1.28, with the README that says how each file was produced.
let recordings = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../Fixtures/apiserver-1.28").standardized.path

/// The body of a recorded `curl -i` exchange: what follows the last head (a POST's
/// recording starts with an interim "100 Continue" head). JSON bodies hold no raw newlines.
func recordedBody(_ name: String) throws -> Data {
    let text = try String(contentsOfFile: "\(recordings)/\(name)", encoding: .utf8).replacingOccurrences(of: "\r\n", with: "\n")
    guard let body = text.components(separatedBy: "\n\n").last(where: { $0.hasPrefix("{") }) else {
        throw CocoaError(.fileReadCorruptFile)
    }
    return Data(body.utf8)
}

@Suite struct ModelTests {
    let decoder = JSONDecoder()

    @Test func decodesAPkiWithItsMetadataAndSpec() throws {
        let pki = try decoder.decode(Pki.self, from: recordedBody("get-200.http"))
        #expect(pki.metadata.name == "app1-pki")
        #expect(pki.metadata.namespace == "app1")
        #expect(pki.metadata.generation != nil)
        #expect(pki.metadata.resourceVersion != nil)
        #expect(pki.spec.serviceName == "app1")
        #expect(pki.spec.privateKey == PrivateKeySpec(algorithm: "ECDSA", size: 256))
    }

    /// The client's decoder (JSONCoding, which hands the reader its value as it is) and any
    /// other (Foundation's, whose containers the value is rebuilt from) read a Pki through
    /// the one reader admission uses, with the whole of metadata and the status.
    @Test func bothDecodersReadTheWholePkiThroughTheOneReader() throws {
        let body = try recordedBody("update-status-200.http")
        let throughClient = try JSONCoding.decode(Pki.self, from: Array(body))
        let throughFoundation = try decoder.decode(Pki.self, from: body)
        for pki in [throughClient, throughFoundation] {
            #expect(pki.metadata.generation == 2)
            #expect(pki.metadata.creationTimestamp == "2026-11-21T19:04:18Z")
            #expect(pki.metadata.annotations?["kubectl.kubernetes.io/last-applied-configuration"]?.hasPrefix("{\"apiVersion\"") == true)
            #expect(pki.status?.conditions?.first == Pki.Condition(type: "Ready", status: "True", reason: "Issued",
                                                                     message: "Certificate issued, valid until 2027-01-20T19:00:00Z",
                                                                     lastTransitionTime: "2026-11-21T19:00:00Z", observedGeneration: 2))
            #expect(pki.status?.serialNumber == "5a3c9e01")
            #expect(pki.spec.renewBefore == "240h")
            #expect(pki.problems.isEmpty)
        }
        #expect(throughClient == throughFoundation)
        // Written back, it is what the API server keeps: the reader's findings are no field.
        let written = try JSONSerialization.jsonObject(with: Data(try JSONCoding.encode(throughClient))) as? [String: Any]
        #expect(written.map { Set($0.keys) } == ["apiVersion", "kind", "metadata", "spec", "status"])
    }

    @Test func decodesTheAPIsErrorBodies() throws {
        let notFound = try decoder.decode(APIStatus.self, from: recordedBody("get-404.http"))
        #expect(notFound == APIStatus(code: 404, reason: "NotFound", message: "pkis.certgate.dev \"missing\" not found",
                                      details: .init(name: "missing", group: "certgate.dev", kind: "pkis")))
        let conflict = try decoder.decode(APIStatus.self, from: recordedBody("update-409-conflict.http"))
        #expect(conflict.code == 409 && conflict.reason == "Conflict")
        let expired = try decoder.decode(APIStatus.self, from: recordedBody("list-410-exact.http"))
        #expect(expired.description == "410 Expired: The resourceVersion for the provided list is too old.")
        let invalid = try decoder.decode(APIStatus.self, from: recordedBody("create-422-invalid.http"))
        #expect(invalid.details?.causes?.map(\.field) == ["spec.dnsNames", "spec.privateKey.size"])
    }

    @Test func decodesAListPageWithItsContinueToken() throws {
        let page = try decoder.decode(ObjectList<Pki>.self, from: recordedBody("list-pkis-limit1.http"))
        #expect(page.items.count == 1)
        #expect(page.metadata.remainingItemCount == 1)
        #expect(page.metadata.continue?.hasPrefix("eyJ2Ijoi") == true)
    }

    @Test func decodesEventsSecretsAndLeases() throws {
        let event = try decoder.decode(Event.self, from: recordedBody("event-create-201.http"))
        #expect(event.involvedObject == ObjectReference(apiVersion: "certgate.dev/v1", kind: "Pki", namespace: "app1",
                                                        name: "app1-pki", uid: "a13ebf5d-3f0e-4714-b942-ee596812bd99"))
        #expect(event.reason == "Issued" && event.type == "Normal" && event.count == 1 && event.source?.component == "certgate")
        let secret = try decoder.decode(Secret.self, from: recordedBody("secret-tls-create-201.http"))
        #expect(secret.type == "kubernetes.io/tls")
        #expect(secret.bytes("tls.crt").map { String(decoding: $0, as: UTF8.self).hasPrefix("-----BEGIN CERTIFICATE-----") } == true)
        let lease = try decoder.decode(Lease.self, from: recordedBody("lease-create-201.http"))
        #expect(lease.spec?.holderIdentity == "certgate-7d9f-1")
    }

    @Test func decodesEveryEventOfARecordedWatchStream() throws {
        let lines = try String(contentsOfFile: "\(recordings)/watch-pkis.jsonl", encoding: .utf8).split(separator: "\n")
        var kinds: [String] = []
        for line in lines {
            switch try WatchEvent<Pki>.decode(Array(line.utf8)) {
            case .added(let pki): kinds.append("ADDED \(pki.metadata.name ?? "")")
            case .modified(let pki): kinds.append("MODIFIED \(pki.metadata.name ?? "")")
            case .deleted(let pki): kinds.append("DELETED \(pki.metadata.name ?? "")")
            case .bookmark(let version): kinds.append("BOOKMARK \(version.isEmpty ? "?" : "rv")")
            case .error(let status): kinds.append("ERROR \(status.code)")
            }
        }
        #expect(kinds.count == 5)
        #expect(kinds.first == "ADDED app1-watch")
        #expect(kinds.contains("BOOKMARK rv"))
        #expect(kinds.contains { $0.hasPrefix("DELETED ") })
        let gone = #"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 1 (325)","reason":"Expired","code":410}}"#
        guard case .error(let status) = try WatchEvent<Pki>.decode(Array(gone.utf8)) else { Issue.record("not an error"); return }
        #expect(status.code == 410 && status.reason == "Expired")
    }

    @Test func aWatchStreamCutAnywhereGivesTheSameEventsAndALineWithoutEndIsRefused() throws {
        let wire = try [UInt8](Data(contentsOf: URL(fileURLWithPath: "\(recordings)/watch-pkis.jsonl")))
        for size in [1, 7, 4096, wire.count] {
            var stream = WatchStreamDecoder<Pki>()
            var events = 0
            for start in stride(from: 0, to: wire.count, by: size) {
                _ = try stream.append(Array(wire[start..<min(wire.count, start + size)])) { _ in events += 1; return true }
            }
            #expect(events == 5, "pieces of \(size) bytes")
        }
        var endless = WatchStreamDecoder<Pki>()
        let piece = [UInt8](repeating: UInt8(ascii: "x"), count: 1 << 20)
        let error = #expect(throws: APIStatus.self) {
            for _ in 0...16 { _ = try endless.append(piece) { _ in true } }
        }
        #expect(error?.message?.contains("longer than 16777216 bytes") == true, "\(String(describing: error))")
    }

    @Test func findsTheSecretsAPodUsesInVolumesAndEnvironment() throws {
        let json = #"{"metadata":{"name":"app1","namespace":"app1"},"spec":{"volumes":[{"name":"tls","secret":{"secretName":"app1-tls"}},{"name":"all","projected":{"sources":[{"secret":{"name":"app1-extra"}},{"configMap":{"name":"cm"}}]}},{"name":"tmp","emptyDir":{}}],"#
            + #""containers":[{"name":"app","env":[{"name":"A","value":"x"},{"name":"KEY","valueFrom":{"secretKeyRef":{"name":"app1-env","key":"tls.key"}}},{"name":"CM","valueFrom":{"configMapKeyRef":{"name":"cm","key":"k"}}}]}],"#
            + #""initContainers":[{"name":"init","envFrom":[{"secretRef":{"name":"app1-all"}},{"configMapRef":{"name":"cm"}}]}]},"status":{"phase":"Running"}}"#
        let pod = try decoder.decode(Pod.self, from: Data(json.utf8))
        #expect(pod.secretNames == ["app1-tls", "app1-extra", "app1-env", "app1-all"])
        #expect(!pod.hasFinished)
        let done = try decoder.decode(Pod.self, from: Data(#"{"metadata":{"name":"job"},"status":{"phase":"Succeeded"}}"#.utf8))
        #expect(done.hasFinished)
    }

    @Test func aSecretEncodesItsDataAsBase64() throws {
        let secret = Secret(metadata: ObjectMeta(name: "app1-tls", namespace: "app1"), type: "kubernetes.io/tls",
                            data: ["tls.crt": Array("cert".utf8)])
        let json = String(decoding: try JSONEncoder().encode(secret), as: UTF8.self)
        #expect(json.contains(#""tls.crt":"Y2VydA==""#))
        #expect(try JSONDecoder().decode(Secret.self, from: Data(json.utf8)).bytes("tls.crt") == Array("cert".utf8))
    }
}
