import CertgateJSON

/// metadata of any Kubernetes object: one type for the Pki the webhook, `validate` and the
/// reconciler read, and for every other kind the client reads and writes.
public struct ObjectMeta: Codable, Sendable, Equatable {
    public var name: String?
    public var generateName: String?
    public var namespace: String?
    public var uid: String?
    public var resourceVersion: String?
    public var generation: Int64?
    public var creationTimestamp: String?
    public var deletionTimestamp: String?
    public var labels: [String: String]?
    public var annotations: [String: String]?
    public var ownerReferences: [OwnerReference]?

    public init(name: String? = nil, namespace: String? = nil, uid: String? = nil, generation: Int64? = nil,
                resourceVersion: String? = nil, labels: [String: String]? = nil, annotations: [String: String]? = nil,
                ownerReferences: [OwnerReference]? = nil) {
        self.name = name
        self.namespace = namespace
        self.uid = uid
        self.generation = generation
        self.resourceVersion = resourceVersion
        self.labels = labels
        self.annotations = annotations
        self.ownerReferences = ownerReferences
    }
}

public struct OwnerReference: Codable, Sendable, Equatable {
    public var apiVersion: String
    public var kind: String
    public var name: String
    public var uid: String
    public var controller: Bool?
    public var blockOwnerDeletion: Bool?

    public init(apiVersion: String, kind: String, name: String, uid: String, controller: Bool? = true, blockOwnerDeletion: Bool? = true) {
        self.apiVersion = apiVersion
        self.kind = kind
        self.name = name
        self.uid = uid
        self.controller = controller
        self.blockOwnerDeletion = blockOwnerDeletion
    }
}
