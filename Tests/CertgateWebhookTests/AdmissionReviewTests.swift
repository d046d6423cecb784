import CertgatePKI
import CertgateWebhook
import Foundation
import Testing

let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../Fixtures/apiserver-1.28").standardized.path

func fixture(_ name: String) throws -> [UInt8] {
    Array(try Data(contentsOf: URL(fileURLWithPath: "\(fixtures)/\(name)")))
}

@Suite struct AdmissionReviewDecodingTests {
    @Test func decodesTheAPIServersCreate() throws {
        let review = try AdmissionReview(json: try fixture("admissionreview-create.json"))
        #expect(review.apiVersion == "admission.k8s.io/v1")
        #expect(review.request.operation == "CREATE")
        #expect(review.request.kind == GroupVersionName(group: "certgate.dev", version: "v1", name: "Pki"))
        #expect(review.request.resource == GroupVersionName(group: "certgate.dev", version: "v1", name: "pkis"))
        #expect(review.request.isForPkis)
        #expect(review.request.namespace == "app1")
        #expect(review.request.userInfo.username == "e2e-admin")
        #expect(review.request.object?.spec.serviceName == "app1")
        #expect(review.request.object?.metadata.name == "app1-pki")
        #expect(review.request.oldObject == nil)
        #expect(!review.request.dryRun)
    }

    @Test func decodesUpdateDryRunDeleteAndTheTypo() throws {
        let update = try AdmissionReview(json: try fixture("admissionreview-update.json")).request
        #expect(update.operation == "UPDATE")
        #expect(update.object?.metadata.generation == 2)
        #expect(update.oldObject?.spec.serviceName == "app1")
        #expect(update.object?.spec.dnsNames == ["app1.app1.svc", "app1.app1.svc.cluster.local", "app1"])

        #expect(try AdmissionReview(json: try fixture("admissionreview-dryrun.json")).request.dryRun)

        let delete = try AdmissionReview(json: try fixture("admissionreview-delete.json")).request
        #expect(delete.operation == "DELETE")
        #expect(delete.object == nil)
        #expect(delete.oldObject?.metadata.name == "app2-pki")

        let typo = try AdmissionReview(json: try fixture("admissionreview-denied.json")).request
        #expect(typo.object?.spec.serviceName == "appp1")
        #expect(typo.object?.spec.duration == "8760h")
    }

    @Test(arguments: [
        (#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"1","operation":"CREATE"}}"#,
         "expected apiVersion admission.k8s.io/v1, got \"admission.k8s.io/v1beta1\" (set admissionReviewVersions: [v1])"),
        (#"{"apiVersion":"v1","kind":"Pod"}"#, "expected kind AdmissionReview, got \"Pod\""),
        (#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#, "the AdmissionReview has no request"),
        (#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"operation":"CREATE"}}"#, "request.uid is missing"),
        (#"[1,2]"#, "the body is not a JSON object"),
    ])
    func bodiesThatAreNotAnAdmissionReviewSayWhy(_ body: String, _ message: String) {
        #expect(throws: AdmissionReviewError(message: message)) { try AdmissionReview(json: Array(body.utf8)) }
    }

    @Test func theAnswerRepeatsTheEnvelopeAndMatchesTheRecordedDenial() throws {
        let review = try AdmissionReview(json: try fixture("admissionreview-denied.json"))
        let response = AdmissionResponse(
            uid: review.request.uid, allowed: false,
            status: .init(code: 403, reason: "Forbidden",
                          message: "spec.serviceName: \"appp1\" is not in the allowed names [app1 app2] for namespace app1 (did you mean \"app1\"?)"),
            warnings: ["spec.duration: 8760h is longer than the recommended 2160h"])
        let ours = try JSONSerialization.jsonObject(with: Data(response.encoded(for: review))) as! NSDictionary
        let recorded = try JSONSerialization.jsonObject(with: Data(try fixture("admissionreview-denied-response.json"))) as! NSDictionary
        #expect(ours == recorded)
    }
}
