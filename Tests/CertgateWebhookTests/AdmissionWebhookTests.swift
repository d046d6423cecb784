import CertgateHTTP
import CertgatePKI
import CertgateWebhook
import Foundation
import Testing

let examplePolicy = Policy(namespaces: ["app1": ["app1", "app2"]], ipRanges: [IPRange("10.0.0.0/8")!],
                           maximumDuration: 8760 * 3600, defaultDuration: 2160 * 3600)

func post(_ body: [UInt8], policy: Policy? = examplePolicy) throws -> (status: Int, json: [String: Any]) {
    let response = AdmissionWebhook { policy }.handle(HTTPRequest(method: "POST", path: "/validate", query: "timeout=10s", body: body))
    return (response.status, try JSONSerialization.jsonObject(with: Data(response.body)) as! [String: Any])
}

@Suite struct AdmissionWebhookTests {
    @Test func theTypoIsDeniedWithWhatKubectlShowed() throws {
        let (status, json) = try post(try fixture("admissionreview-denied.json"))
        #expect(status == 200)
        let recorded = try JSONSerialization.jsonObject(with: Data(try fixture("admissionreview-denied-response.json"))) as! NSDictionary
        #expect(NSDictionary(dictionary: json) == recorded)
    }

    @Test func anAllowedCreateIsAnsweredWithItsUID() throws {
        let body = try fixture("admissionreview-create.json")
        let response = try post(body).json["response"] as! [String: Any]
        #expect(response["uid"] as? String == (try AdmissionReview(json: body).request.uid))
        #expect(response["allowed"] as? Bool == true, "\(response)")
        #expect(response["status"] == nil)
    }

    @Test func aDryRunIsJudgedTheSameWay() throws {
        // The recorded server-side dry run carries the bare name "app1" in dnsNames.
        let response = try post(try fixture("admissionreview-dryrun.json")).json["response"] as! [String: Any]
        #expect(response["allowed"] as? Bool == false)
        #expect((response["status"] as? [String: Any])?["message"] as? String
                == "spec.dnsNames[2]: \"app1\" is not under an allowed suffix [.svc .svc.cluster.local]")
    }

    @Test func deletesAndOtherResourcesAreNotJudged() throws {
        let delete = try post(try fixture("admissionreview-delete.json")).json["response"] as! [String: Any]
        #expect(delete["allowed"] as? Bool == true)
        let status = #"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"s1","operation":"UPDATE","resource":{"group":"certgate.dev","version":"v1","resource":"pkis"},"subResource":"status","object":{"spec":{}}}}"#
        #expect((try post(Array(status.utf8)).json["response"] as! [String: Any])["allowed"] as? Bool == true)
    }

    @Test func anUpdateIsJudgedOnTheNewObject() throws {
        // The recorded update adds the bare name "app1" to dnsNames.
        let response = try post(try fixture("admissionreview-update.json")).json["response"] as! [String: Any]
        #expect(response["allowed"] as? Bool == false)
        #expect((response["status"] as? [String: Any])?["message"] as? String
                == "spec.dnsNames[2]: \"app1\" is not under an allowed suffix [.svc .svc.cluster.local]")
        #expect((response["status"] as? [String: Any])?["code"] as? Int == 403)
    }

    @Test func aBodyThatIsNotAnAdmissionReviewIs400() throws {
        let (status, json) = try post(Array("{\"kind\":\"Pod\"}".utf8))
        #expect(status == 400)
        #expect(json["message"] as? String == "the body is not an admission.k8s.io/v1 AdmissionReview: expected kind AdmissionReview, got \"Pod\"")
        let (broken, brokenJSON) = try post(Array("{\"kind\":".utf8))
        #expect(broken == 400)
        #expect((brokenJSON["message"] as? String)?.contains("invalid JSON at byte 8") == true)
    }

    @Test func withoutAPolicyNothingIsLetThroughAndTheReasonIsGiven() throws {
        let response = try post(try fixture("admissionreview-create.json"), policy: nil).json["response"] as! [String: Any]
        #expect(response["allowed"] as? Bool == false)
        #expect((response["status"] as? [String: Any])?["message"] as? String == "certgate has no policy loaded yet; its logs say why")
    }
}
