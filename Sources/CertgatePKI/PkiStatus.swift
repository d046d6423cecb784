import CertgateJSON

extension Pki {
    /// `status` of a Pki, as the reconciler writes it.
    public struct Status: Codable, Sendable, Equatable {
        public var conditions: [Condition]?
        public var notBefore: String?
        public var notAfter: String?
        public var renewalTime: String?
        public var serialNumber: String?
        public var secretName: String?
        public var observedGeneration: Int64?
        /// The value of the certgate.dev/renew annotation last acted on: a new value
        /// re-issues once; the same value again does nothing.
        public var lastRenewRequest: String?

        public init() {}
    }

    /// One of `status.conditions` (Ready, Issuing).
    public struct Condition: Codable, Sendable, Equatable {
        public var type: String
        /// True, False or Unknown.
        public var status: String
        public var reason: String?
        public var message: String?
        public var lastTransitionTime: String?
        public var observedGeneration: Int64?

        public init(type: String, status: String, reason: String?, message: String?, lastTransitionTime: String?, observedGeneration: Int64?) {
            self.type = type
            self.status = status
            self.reason = reason
            self.message = message
            self.lastTransitionTime = lastTransitionTime
            self.observedGeneration = observedGeneration
        }
    }

    /// What every Pki is, whether or not a body said so.
    public static let typeMeta = (apiVersion: "certgate.dev/v1", kind: "Pki")
}

/// The Kubernetes client's form of a Pki. Decoding goes through the one reader,
/// ``Pki/init(reading:wholeMetadata:)``, with the whole of metadata and the status;
/// encoding writes what the API server keeps (problems are the reader's findings, not
/// fields).
extension Pki: Codable {
    private enum CodingKeys: String, CodingKey {
        case apiVersion, kind, metadata, spec, status
    }

    public init(from decoder: any Decoder) throws {
        let document = try JSONValue(from: decoder)
        self = try JSONReader.read(document.bytes) { try Pki(reading: &$0, wholeMetadata: true) }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeIfPresent(apiVersion, forKey: .apiVersion)
        try container.encodeIfPresent(kind, forKey: .kind)
        try container.encode(metadata, forKey: .metadata)
        try container.encode(spec, forKey: .spec)
        try container.encodeIfPresent(status, forKey: .status)
    }
}
