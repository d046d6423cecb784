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
        // The recorded server-side dry run changes the duration of a Pki whose dnsNames
        // already held the bare name "app1": the dry run is judged as the update would be,
        // and the update leaves that name as it was, so it warns instead of denying.
        let dryRun = try fixture("admissionreview-dryrun.json")
        let response = try post(dryRun).json["response"] as! [String: Any]
        #expect(response["allowed"] as? Bool == true, "\(response)")
        #expect(response["warnings"] as? [String] == [
            "unchanged by this update, so allowed: spec.dnsNames[2]: \"app1\" is not under an allowed suffix [.svc .svc.cluster.local]"])
        let real = String(decoding: dryRun, as: UTF8.self).replacingOccurrences(of: #""dryRun":true"#, with: #""dryRun":false"#)
        #expect(NSDictionary(dictionary: try post(Array(real.utf8)).json["response"] as! [String: Any]) == NSDictionary(dictionary: response))
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

    /// An UPDATE of a Pki admitted under an older policy (serviceName appp1 is no longer
    /// allowed) that the policy now refuses.
    private func update(old oldSpec: String, new newSpec: String, newMetadata: String = #"{"name":"app2-pki","namespace":"app1"}"#) throws -> [String: Any] {
        let review = #"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","operation":"UPDATE","#
            + #""resource":{"group":"certgate.dev","version":"v1","resource":"pkis"},"namespace":"app1","#
            + #""object":{"apiVersion":"certgate.dev/v1","kind":"Pki","metadata":"# + newMetadata + #","spec":"# + newSpec + "},"
            + #""oldObject":{"apiVersion":"certgate.dev/v1","kind":"Pki","metadata":{"name":"app2-pki","namespace":"app1"},"spec":"# + oldSpec + "}}}"
        return try post(Array(review.utf8)).json["response"] as! [String: Any]
    }

    @Test func anAnnotationOnAPkiThePolicyNoLongerAllowsIsAdmittedWithAWarning() throws {
        let spec = #"{"serviceName":"appp1","dnsNames":["appp1.app1.svc"]}"#
        let response = try update(old: spec, new: spec, newMetadata: #"{"name":"app2-pki","namespace":"app1","annotations":{"team":"payments"}}"#)
        #expect(response["allowed"] as? Bool == true, "\(response)")
        let warnings = response["warnings"] as? [String] ?? []
        #expect(warnings.contains { $0.hasPrefix("unchanged by this update, so allowed: spec.serviceName: \"appp1\" is not in the allowed names") },
                "\(warnings)")
    }

    @Test func anUpdateIsDeniedForWhatItBreaksNotForWhatWasBrokenBefore() throws {
        let old = #"{"serviceName":"appp1","dnsNames":["appp1.app1.svc"]}"#
        // A new name before the old one moves it to index 1: still the same value, still inherited.
        let response = try update(old: old, new: #"{"serviceName":"appp1","dnsNames":["bad_name","appp1.app1.svc"]}"#)
        #expect(response["allowed"] as? Bool == false)
        let message = (response["status"] as? [String: Any])?["message"] as? String
        #expect(message?.hasPrefix("spec.dnsNames[0]: \"bad_name\" is not a valid DNS name") == true, "\(String(describing: message))")
        #expect(message?.contains("serviceName") == false, "the inherited violation is a warning, not a reason to deny")
        #expect((response["warnings"] as? [String] ?? []).contains { $0.contains("spec.serviceName") })

        let changed = try update(old: old, new: #"{"serviceName":"app3","dnsNames":["appp1.app1.svc"]}"#)
        #expect(changed["allowed"] as? Bool == false, "a new value that breaks the rule is judged as new")
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
