import CertgateJSON
import CertgatePKI

// The parts of the Kubernetes API Certgate reads and writes, as Codable value types.
// Optional fields stay optional: the API server omits what is unset, and a field Certgate
// does not model is simply not sent back (use a merge patch to change part of an object).

/// Only metadata.managedFields of an object, read when a question needs it (who set an
/// annotation): ObjectMeta leaves them out, so informers neither decode nor keep them for
/// every object, and an update never carries a client's copy back. Read straight from
/// metadata, with no second metadata type.
public struct ManagedFields: Decodable, Sendable, Equatable {
    public var entries: [ManagedFieldsEntry]

    private enum ObjectKeys: String, CodingKey { case metadata }
    private enum MetadataKeys: String, CodingKey { case managedFields }

    public init(from decoder: any Decoder) throws {
        let metadata = try decoder.container(keyedBy: ObjectKeys.self).nestedContainer(keyedBy: MetadataKeys.self, forKey: .metadata)
        entries = try metadata.decodeIfPresent([ManagedFieldsEntry].self, forKey: .managedFields) ?? []
    }

    /// The field manager that last wrote annotation `key` ("kubectl-annotate",
    /// "certgate-renew", a GitOps tool); nil when none is recorded.
    public func manager(ofAnnotation key: String) -> String? {
        entries
            .filter { $0.fieldsV1?.child("f:metadata")?.child("f:annotations")?.child("f:" + key) != nil }
            .max { ($0.time ?? "") < ($1.time ?? "") }?.manager
    }
}

/// One entry of metadata.managedFields: a manager and the set of fields it wrote.
public struct ManagedFieldsEntry: Codable, Sendable, Equatable {
    public var manager: String?
    public var operation: String?
    public var time: String?
    public var fieldsV1: FieldSet?
}

/// A managedFields field set ({"f:metadata":{"f:annotations":{"f:KEY":{}}}}): field
/// names, each with the set of its own fields.
public struct FieldSet: Codable, Sendable, Equatable {
    public var children: [String: FieldSet]

    public init(from decoder: Decoder) throws {
        children = try decoder.singleValueContainer().decode([String: FieldSet].self)
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(children)
    }

    public func child(_ name: String) -> FieldSet? { children[name] }
}

/// The API's error body (kind Status): what failed, why, and the HTTP code.
public struct APIStatus: Codable, Sendable, Equatable, Error, CustomStringConvertible {
    public struct Details: Codable, Sendable, Equatable {
        public var name: String?
        public var group: String?
        public var kind: String?
        public var causes: [Cause]?
        public var retryAfterSeconds: Int?

        public init(name: String? = nil, group: String? = nil, kind: String? = nil, causes: [Cause]? = nil, retryAfterSeconds: Int? = nil) {
            self.name = name
            self.group = group
            self.kind = kind
            self.causes = causes
            self.retryAfterSeconds = retryAfterSeconds
        }
    }

    public struct Cause: Codable, Sendable, Equatable {
        public var reason: String?
        public var message: String?
        public var field: String?
    }

    public var status: String?
    public var message: String?
    /// NotFound, AlreadyExists, Conflict, Invalid, Expired, Forbidden, Unauthorized, TooManyRequests...
    public var reason: String?
    public var details: Details?
    public var code: Int

    public init(code: Int, reason: String?, message: String?, details: Details? = nil) {
        status = "Failure"
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
    }

    public var description: String { "\(code) \(reason ?? "Failure"): \(message ?? "")" }

    private enum CodingKeys: String, CodingKey { case status, message, reason, details, code }

    /// `code` is omitted when zero, as a successful DELETE's Status has it (pki-delete-200.http).
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        status = try container.decodeIfPresent(String.self, forKey: .status)
        message = try container.decodeIfPresent(String.self, forKey: .message)
        reason = try container.decodeIfPresent(String.self, forKey: .reason)
        details = try container.decodeIfPresent(Details.self, forKey: .details)
        code = try container.decodeIfPresent(Int.self, forKey: .code) ?? 0
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeIfPresent(status, forKey: .status)
        try container.encodeIfPresent(message, forKey: .message)
        try container.encodeIfPresent(reason, forKey: .reason)
        try container.encodeIfPresent(details, forKey: .details)
        if code != 0 { try container.encode(code, forKey: .code) }
    }
}

/// core/v1 Secret; `data` values are base64 on the wire.
/// core/v1 Secret, its data held decoded: the bytes each key holds, as a cache of thousands
/// of Secrets wants them (a quarter smaller than base64, and decoded once, not at every read).
public struct Secret: Codable, Sendable, Equatable {
    public var apiVersion: String? = "v1"
    public var kind: String? = "Secret"
    public var metadata: ObjectMeta
    public var type: String?
    public var data: [String: [UInt8]]?

    public init(metadata: ObjectMeta, type: String? = nil, data: [String: [UInt8]] = [:]) {
        self.metadata = metadata
        self.type = type
        self.data = data
    }

    /// The bytes of `data[key]`.
    public func bytes(_ key: String) -> [UInt8]? {
        data?[key]
    }

    private enum CodingKeys: String, CodingKey {
        case apiVersion, kind, metadata, type, data
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        apiVersion = try container.decodeIfPresent(String.self, forKey: .apiVersion)
        kind = try container.decodeIfPresent(String.self, forKey: .kind)
        metadata = try container.decode(ObjectMeta.self, forKey: .metadata)
        type = try container.decodeIfPresent(String.self, forKey: .type)
        data = try container.decodeIfPresent([String: String].self, forKey: .data)?.reduce(into: [:]) { data, entry in
            guard let bytes = Base64.decode(entry.value) else {
                throw DecodingError.dataCorruptedError(forKey: .data, in: container,
                                                       debugDescription: "data[\(entry.key)] is not base64")
            }
            data[entry.key] = bytes
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeIfPresent(apiVersion, forKey: .apiVersion)
        try container.encodeIfPresent(kind, forKey: .kind)
        try container.encode(metadata, forKey: .metadata)
        try container.encodeIfPresent(type, forKey: .type)
        try container.encodeIfPresent(data?.mapValues { Base64.encode($0) }, forKey: .data)
    }
}

/// core/v1 ConfigMap: text data by key.
public struct ConfigMap: Codable, Sendable, Equatable {
    public var apiVersion: String? = "v1"
    public var kind: String? = "ConfigMap"
    public var metadata: ObjectMeta
    public var data: [String: String]?

    public init(metadata: ObjectMeta, data: [String: String]? = nil) {
        self.metadata = metadata
        self.data = data
    }
}

/// A reference to an object, as Events name what they are about.
public struct ObjectReference: Codable, Sendable, Equatable {
    public var apiVersion: String?
    public var kind: String?
    public var namespace: String?
    public var name: String?
    public var uid: String?
    public var resourceVersion: String?
    public var fieldPath: String?

    public init(apiVersion: String?, kind: String?, namespace: String?, name: String?, uid: String?) {
        self.apiVersion = apiVersion
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self.uid = uid
    }
}

/// core/v1 Event, what `kubectl describe` lists.
public struct Event: Codable, Sendable, Equatable {
    public struct Source: Codable, Sendable, Equatable {
        public var component: String?
        public var host: String?
        public init(component: String?) { self.component = component }
    }

    public var apiVersion: String? = "v1"
    public var kind: String? = "Event"
    public var metadata: ObjectMeta
    public var involvedObject: ObjectReference
    public var reason: String?
    public var message: String?
    /// Normal or Warning.
    public var type: String?
    public var count: Int?
    public var firstTimestamp: String?
    public var lastTimestamp: String?
    public var source: Source?
    public var reportingComponent: String?
    public var reportingInstance: String?

    public init(metadata: ObjectMeta, involvedObject: ObjectReference, reason: String, message: String, type: String,
                count: Int = 1, firstTimestamp: String, lastTimestamp: String, component: String = "certgate") {
        self.metadata = metadata
        self.involvedObject = involvedObject
        self.reason = reason
        self.message = message
        self.type = type
        self.count = count
        self.firstTimestamp = firstTimestamp
        self.lastTimestamp = lastTimestamp
        source = Source(component: component)
        reportingComponent = component
    }
}

/// core/v1 Pod, only the parts that name the Secrets it uses and whether it still runs.
public struct Pod: Codable, Sendable, Equatable {
    public struct Spec: Codable, Sendable, Equatable {
        public var volumes: [Volume]?
        public var containers: [Container]?
        public var initContainers: [Container]?
        public var ephemeralContainers: [Container]?
    }

    public struct Volume: Codable, Sendable, Equatable {
        public struct SecretSource: Codable, Sendable, Equatable { public var secretName: String? }
        public struct Projected: Codable, Sendable, Equatable {
            public struct Source: Codable, Sendable, Equatable {
                public struct SecretProjection: Codable, Sendable, Equatable { public var name: String? }
                public var secret: SecretProjection?
            }
            public var sources: [Source]?
        }
        public var name: String
        public var secret: SecretSource?
        public var projected: Projected?
    }

    /// A container's env and envFrom, as far as they name Secrets.
    public struct Container: Codable, Sendable, Equatable {
        public struct NamedReference: Codable, Sendable, Equatable { public var name: String? }
        public struct EnvVar: Codable, Sendable, Equatable {
            public struct Source: Codable, Sendable, Equatable { public var secretKeyRef: NamedReference? }
            public var valueFrom: Source?
        }
        public struct EnvFrom: Codable, Sendable, Equatable { public var secretRef: NamedReference? }
        public var env: [EnvVar]?
        public var envFrom: [EnvFrom]?
    }

    public struct Status: Codable, Sendable, Equatable {
        /// Pending, Running, Succeeded, Failed or Unknown.
        public var phase: String?
    }

    public var metadata: ObjectMeta
    public var spec: Spec?
    public var status: Status?

    /// Every Secret the pod uses: secret and projected volumes, env valueFrom.secretKeyRef
    /// and envFrom.secretRef of any of its containers.
    public var secretNames: Set<String> {
        var names = Set<String>()
        for volume in spec?.volumes ?? [] {
            if let name = volume.secret?.secretName { names.insert(name) }
            for source in volume.projected?.sources ?? [] {
                if let name = source.secret?.name { names.insert(name) }
            }
        }
        for container in (spec?.containers ?? []) + (spec?.initContainers ?? []) + (spec?.ephemeralContainers ?? []) {
            for variable in container.env ?? [] {
                if let name = variable.valueFrom?.secretKeyRef?.name { names.insert(name) }
            }
            for source in container.envFrom ?? [] {
                if let name = source.secretRef?.name { names.insert(name) }
            }
        }
        return names
    }

    /// Succeeded or Failed: its owner no longer looks at it for news of its Secret.
    public var hasFinished: Bool { status?.phase == "Succeeded" || status?.phase == "Failed" }
}

/// coordination.k8s.io/v1 Lease, for leader election.
public struct Lease: Codable, Sendable, Equatable {
    public struct Spec: Codable, Sendable, Equatable {
        public var holderIdentity: String?
        public var leaseDurationSeconds: Int?
        public var acquireTime: String?
        public var renewTime: String?
        public var leaseTransitions: Int?

        public init(holderIdentity: String?, leaseDurationSeconds: Int?, acquireTime: String?, renewTime: String?, leaseTransitions: Int?) {
            self.holderIdentity = holderIdentity
            self.leaseDurationSeconds = leaseDurationSeconds
            self.acquireTime = acquireTime
            self.renewTime = renewTime
            self.leaseTransitions = leaseTransitions
        }
    }

    public var apiVersion: String? = "coordination.k8s.io/v1"
    public var kind: String? = "Lease"
    public var metadata: ObjectMeta
    public var spec: Spec?

    public init(metadata: ObjectMeta, spec: Spec?) {
        self.metadata = metadata
        self.spec = spec
    }
}

/// admissionregistration.k8s.io/v1 ValidatingWebhookConfiguration. Certgate writes whole
/// ones only for a configuration it registers itself; it changes the CA bundle of one it
/// does not own with a strategic merge patch, so fields not modelled here are kept.
public struct ValidatingWebhookConfiguration: Codable, Sendable, Equatable {
    public struct Webhook: Codable, Sendable, Equatable {
        public struct ClientConfig: Codable, Sendable, Equatable {
            public struct ServiceReference: Codable, Sendable, Equatable {
                public var namespace: String
                public var name: String
                public var path: String?
                public var port: Int?

                public init(namespace: String, name: String, path: String? = nil, port: Int? = nil) {
                    self.namespace = namespace
                    self.name = name
                    self.path = path
                    self.port = port
                }
            }
            public var url: String?
            public var service: ServiceReference?
            /// Base64 of the PEM CA bundle that verifies the webhook's serving certificate.
            public var caBundle: String?

            public init(url: String? = nil, service: ServiceReference? = nil, caBundle: String? = nil) {
                self.url = url
                self.service = service
                self.caBundle = caBundle
            }
        }

        public struct Rule: Codable, Sendable, Equatable {
            public var apiGroups: [String]
            public var apiVersions: [String]
            public var operations: [String]
            public var resources: [String]
            public var scope: String?

            public init(apiGroups: [String], apiVersions: [String], operations: [String], resources: [String], scope: String? = nil) {
                self.apiGroups = apiGroups
                self.apiVersions = apiVersions
                self.operations = operations
                self.resources = resources
                self.scope = scope
            }
        }

        /// A label selector with matchLabels only (what Certgate writes).
        public struct LabelSelector: Codable, Sendable, Equatable {
            public var matchLabels: [String: String]?
            public init(matchLabels: [String: String]? = nil) { self.matchLabels = matchLabels }
        }

        public var name: String
        public var clientConfig: ClientConfig
        public var rules: [Rule]?
        public var admissionReviewVersions: [String]?
        public var sideEffects: String?
        /// Fail or Ignore.
        public var failurePolicy: String?
        public var matchPolicy: String?
        public var timeoutSeconds: Int?
        public var namespaceSelector: LabelSelector?
        public var objectSelector: LabelSelector?

        public init(name: String, clientConfig: ClientConfig) {
            self.name = name
            self.clientConfig = clientConfig
        }
    }

    public var apiVersion: String? = "admissionregistration.k8s.io/v1"
    public var kind: String? = "ValidatingWebhookConfiguration"
    public var metadata: ObjectMeta
    public var webhooks: [Webhook]?

    public init(metadata: ObjectMeta, webhooks: [Webhook]) {
        self.metadata = metadata
        self.webhooks = webhooks
    }
}

// apiVersion and kind are optional in the types below: list items of built-in kinds carry
// neither (events-list-fieldselector.http), and a decoder that required them would fail on
// the first list a real API server sends.

/// A list envelope (PkiList, SecretList...) with its continue token for pagination.
public struct ObjectList<Item: Codable & Sendable>: Codable, Sendable {
    public struct ListMeta: Codable, Sendable, Equatable {
        public var resourceVersion: String?
        public var `continue`: String?
        public var remainingItemCount: Int?
    }

    public var metadata: ListMeta
    public var items: [Item]
}

/// One event of a watch stream.
public enum WatchEvent<Item: Codable & Sendable>: Sendable {
    case added(Item)
    case modified(Item)
    case deleted(Item)
    /// Only metadata.resourceVersion is meaningful: where to resume.
    case bookmark(resourceVersion: String)
    /// The API server ended the watch with a Status (410 Expired asks for a relist).
    case error(APIStatus)

    /// Decodes one line of a watch stream.
    public static func decode(_ line: [UInt8]) throws -> WatchEvent {
        let document = try JSONValue.parse(line)
        let type = try JSONCoding.decode(WatchEnvelope.self, from: document).type
        switch type {
        case "ADDED": return .added(try JSONCoding.decode(WatchTyped<Item>.self, from: document).object)
        case "MODIFIED": return .modified(try JSONCoding.decode(WatchTyped<Item>.self, from: document).object)
        case "DELETED": return .deleted(try JSONCoding.decode(WatchTyped<Item>.self, from: document).object)
        case "BOOKMARK":
            return .bookmark(resourceVersion: try JSONCoding.decode(WatchTyped<WatchBookmark>.self, from: document).object.metadata.resourceVersion ?? "")
        case "ERROR": return .error(try JSONCoding.decode(WatchTyped<APIStatus>.self, from: document).object)
        default: throw APIStatus(code: 500, reason: "InternalError", message: "unknown watch event type \(type)")
        }
    }
}

/// Splits a watch response body into its events (one JSON object per line) as the body
/// arrives in pieces of any size.
public struct WatchStreamDecoder<Item: Codable & Sendable> {
    /// No object the API server stores comes near this (etcd refuses requests past 1.5 MiB);
    /// a line longer than it is a broken or hostile stream, not an event to wait for.
    public static var maxEventBytes: Int { 16 * 1024 * 1024 }

    private var pending: [UInt8] = []
    /// Where the search for the next newline resumes: a line arriving in many pieces is
    /// scanned once, not once per piece.
    private var scanned = 0

    public init() {}

    /// Adds `piece` and hands every event it completes to `onEvent`. Returns false as soon
    /// as `onEvent` does (the rest of the piece is dropped: the caller stops the watch).
    public mutating func append(_ piece: [UInt8], onEvent: (WatchEvent<Item>) throws -> Bool) throws -> Bool {
        pending.append(contentsOf: piece)
        var lineStart = 0
        defer {
            pending.removeSubrange(0..<lineStart)
            scanned = pending.count
        }
        while let newline = pending[max(lineStart, scanned)...].firstIndex(of: UInt8(ascii: "\n")) {
            let line = Array(pending[lineStart..<newline])
            lineStart = newline + 1
            if line.isEmpty { continue }
            guard try onEvent(try WatchEvent<Item>.decode(line)) else { return false }
        }
        if pending.count - lineStart > Self.maxEventBytes {
            throw APIStatus(code: 500, reason: "InternalError",
                            message: "a watch event is longer than \(Self.maxEventBytes) bytes; the stream is abandoned")
        }
        return true
    }
}

private struct WatchEnvelope: Decodable { let type: String }
private struct WatchTyped<T: Decodable>: Decodable { let object: T }
private struct WatchBookmark: Decodable { let metadata: ObjectMeta }
