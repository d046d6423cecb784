import CertgateHTTP
import CertgateJSON
import CertgatePKI

/// POST /validate: judges CREATE and UPDATE of pkis with the current policy.
///
/// No side effects and no call to the Kubernetes API, so dry runs are judged the same way
/// and the answer comes well within the API server's timeout.
public struct AdmissionWebhook: Sendable {
    /// The policy in force now (the policy file may be reloaded between requests); nil
    /// while none has loaded.
    private let policy: @Sendable () -> Policy?
    /// Told of every answer, for metrics and logs.
    private let onDecision: @Sendable (AdmissionReview, AdmissionResponse) -> Void

    public init(policy: @escaping @Sendable () -> Policy?,
                onDecision: @escaping @Sendable (AdmissionReview, AdmissionResponse) -> Void = { _, _ in }) {
        self.policy = policy
        self.onDecision = onDecision
    }

    /// The answer to one AdmissionReview.
    public func review(_ review: AdmissionReview) -> AdmissionResponse {
        let request = review.request
        guard request.isForPkis, request.operation == "CREATE" || request.operation == "UPDATE" else {
            // DELETE, CONNECT and other resources are not Certgate's to judge.
            return AdmissionResponse(uid: request.uid, allowed: true)
        }
        guard let object = request.object else {
            return AdmissionResponse(uid: request.uid, allowed: false, status: .init(
                code: 400, reason: "BadRequest", message: "the \(request.operation) request carries no object to judge"))
        }
        guard let policy = policy() else {
            return AdmissionResponse(uid: request.uid, allowed: false, status: .init(
                code: 503, reason: "ServiceUnavailable", message: "certgate has no policy loaded yet; its logs say why"))
        }
        let namespace = request.namespace ?? object.metadata.namespace ?? "default"
        let judgement = judge(object, namespace: namespace, policy: policy,
                              previous: request.operation == "UPDATE" ? request.oldObject : nil)
        if judgement.isAllowed {
            return AdmissionResponse(uid: request.uid, allowed: true, warnings: judgement.warnings)
        }
        return AdmissionResponse(uid: request.uid, allowed: false,
                                 status: .init(code: 403, reason: "Forbidden", messageUTF8: judgement.messageUTF8),
                                 warnings: judgement.warnings)
    }

    /// The HTTP handler: an AdmissionReview in, an AdmissionReview out; a body that is not
    /// one gets 400 with the reason.
    public func handle(_ request: HTTPRequest) -> HTTPResponse {
        let review: AdmissionReview
        do {
            review = try AdmissionReview(json: request.body)
        } catch {
            return .error(400, "the body is not an admission.k8s.io/v1 AdmissionReview: " + Self.describe(error))
        }
        let response = self.review(review)
        onDecision(review, response)
        return .json(200, response.encoded(for: review))
    }

    /// The decoding errors by their own descriptions: interpolating `any Error` would go
    /// through the runtime's dynamic casts on every malformed request.
    private static func describe(_ error: Error) -> String {
        switch error {
        case let error as JSONError: error.description
        case let error as AdmissionReviewError: error.description
        default: "\(error)"
        }
    }
}
