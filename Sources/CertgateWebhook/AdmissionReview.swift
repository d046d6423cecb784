import CertgateJSON
import CertgatePKI

/// A group, version and kind (or resource), as AdmissionReview names what it carries.
public struct GroupVersionName: Sendable, Equatable {
    public var group: String
    public var version: String
    /// `kind` for `request.kind`, `resource` for `request.resource`.
    public var name: String

    public init(group: String = "", version: String = "", name: String = "") {
        self.group = group
        self.version = version
        self.name = name
    }
}

/// Who made the request (`request.userInfo`), as far as the webhook uses it: the decision
/// log names the user. Groups and extra are skipped unread (no rule depends on them).
public struct UserInfo: Sendable, Equatable {
    public var username: String?
    public var uid: String?

    public init(username: String? = nil, uid: String? = nil) {
        self.username = username
        self.uid = uid
    }
}

/// `request` of an admission.k8s.io/v1 AdmissionReview, with `object` and `oldObject` read
/// as Pkis (the webhook is registered for pkis only; anything else is allowed unread).
public struct AdmissionRequest: Sendable, Equatable {
    public var uid: String
    public var kind: GroupVersionName
    public var resource: GroupVersionName
    public var subResource: String?
    public var name: String?
    public var namespace: String?
    /// CREATE, UPDATE, DELETE or CONNECT.
    public var operation: String
    public var userInfo: UserInfo
    public var object: Pki?
    public var oldObject: Pki?
    public var dryRun: Bool

    public init(uid: String, kind: GroupVersionName = GroupVersionName(), resource: GroupVersionName = GroupVersionName(),
                subResource: String? = nil, name: String? = nil, namespace: String? = nil, operation: String,
                userInfo: UserInfo = UserInfo(), object: Pki? = nil, oldObject: Pki? = nil, dryRun: Bool = false) {
        self.uid = uid
        self.kind = kind
        self.resource = resource
        self.subResource = subResource
        self.name = name
        self.namespace = namespace
        self.operation = operation
        self.userInfo = userInfo
        self.object = object
        self.oldObject = oldObject
        self.dryRun = dryRun
    }

    /// What `operation` can be.
    public static let operations = ["CREATE", "UPDATE", "DELETE", "CONNECT"]

    /// Whether the request is about the pkis resource itself (not a subresource such as status).
    public var isForPkis: Bool {
        resource.group == Pki.group && resource.name == Pki.resource && (subResource ?? "").isEmpty
    }
}

/// An AdmissionReview as the API server POSTs it: the envelope's apiVersion and kind, which
/// the answer must repeat, and the request.
public struct AdmissionReview: Sendable, Equatable {
    public var apiVersion: String
    public var kind: String
    public var request: AdmissionRequest

    public init(apiVersion: String = "admission.k8s.io/v1", kind: String = "AdmissionReview", request: AdmissionRequest) {
        self.apiVersion = apiVersion
        self.kind = kind
        self.request = request
    }
}

/// A body that is not an AdmissionReview the webhook can answer, and why.
public struct AdmissionReviewError: Error, Equatable, CustomStringConvertible, Sendable {
    public let message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}

extension AdmissionReview {
    static let commonAPIVersions = ["admission.k8s.io/v1"]
    static let commonKinds = ["AdmissionReview"]

    /// Decodes an AdmissionReview body. Unknown fields are skipped; a missing `request`,
    /// `request.uid` or `request.operation`, or a version other than admission.k8s.io/v1,
    /// is an ``AdmissionReviewError``; broken JSON is a ``JSONError``.
    public init(json body: [UInt8]) throws {
        var apiVersion: String?
        var kind: String?
        var request: AdmissionRequest?
        try JSONReader.read(body) { reader in
            guard try reader.peek() == .object else { throw AdmissionReviewError(message: "the body is not a JSON object") }
            try reader.readObject { reader, key in
                if key == "apiVersion" { apiVersion = try reader.readString(usuallyOneOf: AdmissionReview.commonAPIVersions) }
                else if key == "kind" { kind = try reader.readString(usuallyOneOf: AdmissionReview.commonKinds) }
                else if key == "request" { request = try AdmissionRequest(reading: &reader) }
                else { try reader.skipValue() }
            }
        }
        guard kind == "AdmissionReview" else {
            throw AdmissionReviewError(message: "expected kind AdmissionReview, got \(kind.map { "\"\($0)\"" } ?? "none")")
        }
        guard apiVersion == "admission.k8s.io/v1" else {
            throw AdmissionReviewError(message: "expected apiVersion admission.k8s.io/v1, got \(apiVersion.map { "\"\($0)\"" } ?? "none") (set admissionReviewVersions: [v1])")
        }
        // Moved out, not copied: a copy retains every string of the request once more.
        guard let request = request.take() else { throw AdmissionReviewError(message: "the AdmissionReview has no request") }
        guard !request.uid.isEmpty else { throw AdmissionReviewError(message: "request.uid is missing") }
        guard !request.operation.isEmpty else { throw AdmissionReviewError(message: "request.operation is missing") }
        self.init(apiVersion: apiVersion!, kind: kind!, request: request)
    }
}

extension AdmissionRequest {
    init(reading reader: inout JSONReader) throws {
        // One local per field, put together at the end: when the closure mutated self, or a
        // whole request in a local, the compiler copied the request (every string retained
        // once more) three times over.
        var uid = "", operation = ""
        var kind = GroupVersionName(), resource = GroupVersionName()
        var subResource: String?, name: String?, namespace: String?
        var userInfo = UserInfo()
        var object: Pki?, oldObject: Pki?
        var dryRun = false
        try reader.readObject { reader, key in
            if key == "uid" { uid = try reader.readString() }
            else if key == "kind" { kind = try GroupVersionName(reading: &reader, nameKey: "kind") }
            else if key == "resource" { resource = try GroupVersionName(reading: &reader, nameKey: "resource") }
            else if key == "subResource" { subResource = try reader.readNull() ? nil : try reader.readString() }
            else if key == "name" { name = try reader.readNull() ? nil : try reader.readString() }
            else if key == "namespace" { namespace = try reader.readNull() ? nil : try reader.readString() }
            else if key == "operation" { operation = try reader.readString(usuallyOneOf: AdmissionRequest.operations) }
            else if key == "userInfo" { userInfo = try UserInfo(reading: &reader) }
            else if key == "object" { object = try reader.readNull() ? nil : try Pki(reading: &reader) }
            else if key == "oldObject" { oldObject = try reader.readNull() ? nil : try Pki(reading: &reader) }
            else if key == "dryRun" { dryRun = try reader.readNull() ? false : try reader.readBool() }
            else { try reader.skipValue() }
        }
        self.init(uid: uid, kind: kind, resource: resource, subResource: subResource, name: name, namespace: namespace,
                  operation: operation, userInfo: userInfo, object: object.take(), oldObject: oldObject.take(), dryRun: dryRun)
    }
}

extension GroupVersionName {
    // What the API server sends for the one resource the webhook is registered for.
    static let commonGroups = [Pki.group]
    static let commonVersions = [Pki.version]
    static let commonNames = [Pki.kind, Pki.resource]

    init(reading reader: inout JSONReader, nameKey: StaticString) throws {
        self.init()
        try reader.readObject { reader, key in
            if key == "group" { group = try reader.readString(usuallyOneOf: GroupVersionName.commonGroups) }
            else if key == "version" { version = try reader.readString(usuallyOneOf: GroupVersionName.commonVersions) }
            else if key == nameKey { name = try reader.readString(usuallyOneOf: GroupVersionName.commonNames) }
            else { try reader.skipValue() }
        }
    }
}

extension UserInfo {
    init(reading reader: inout JSONReader) throws {
        self.init()
        try reader.readObject { reader, key in
            if key == "username" { username = try reader.readString() }
            else if key == "uid" { uid = try reader.readString() }
            else { try reader.skipValue() }
        }
    }
}

/// `response` of an AdmissionReview: what kubectl shows the user.
public struct AdmissionResponse: Sendable, Equatable {
    public struct Status: Sendable, Equatable {
        public var code: Int
        public var reason: String
        /// Kept as UTF-8: a denial's message is built as bytes and written out as bytes.
        public var messageUTF8: [UInt8]

        public var message: String {
            get { String(decoding: messageUTF8, as: UTF8.self) }
            set { messageUTF8 = Array(newValue.utf8) }
        }

        public init(code: Int, reason: String, message: String) {
            self.init(code: code, reason: reason, messageUTF8: Array(message.utf8))
        }

        public init(code: Int, reason: String, messageUTF8: [UInt8]) {
            self.code = code
            self.reason = reason
            self.messageUTF8 = messageUTF8
        }
    }

    public var uid: String
    public var allowed: Bool
    public var status: Status?
    /// Shown by kubectl as "Warning: ..." lines.
    public var warnings: [String]

    public init(uid: String, allowed: Bool, status: Status? = nil, warnings: [String] = []) {
        self.uid = uid
        self.allowed = allowed
        self.status = status
        self.warnings = warnings
    }

    /// The answer envelope: the request's apiVersion and kind (the API server counts the
    /// call as failed otherwise), then the response. Written on every request, so as
    /// ``JSONText``: one allocation, no intermediate strings.
    public func encoded(for review: AdmissionReview) -> [UInt8] {
        [UInt8](jsonText: { text in
            text.literal(#"{"apiVersion":"#)
            text.quoted(review.apiVersion)
            text.literal(#","kind":"#)
            text.quoted(review.kind)
            text.literal(#","response":{"uid":"#)
            text.quoted(uid)
            text.literal(#","allowed":"#)
            text.bool(allowed)
            if let status {
                text.literal(#","status":{"code":"#)
                text.int(status.code)
                text.literal(#","reason":"#)
                text.quoted(status.reason)
                text.literal(#","message":"#)
                text.quoted(utf8: status.messageUTF8)
                text.literal("}")
            }
            if !warnings.isEmpty {
                text.literal(#","warnings":["#)
                for (index, warning) in warnings.enumerated() {
                    if index > 0 { text.literal(",") }
                    text.quoted(warning)
                }
                text.literal("]")
            }
            text.literal("}}")
        })
    }
}
