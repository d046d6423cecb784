import CertgateSystem
import CertgatePKI
import CertgateYAML

/// A policy file that does not make a policy, and where.
public struct PolicyFileError: Error, CustomStringConvertible, Equatable, Sendable {
    /// Dotted path in the file ("duration.maximum"), empty for the whole file.
    public let path: String
    public let message: String

    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { path.isEmpty ? message : "\(path): \(message)" }
}

/// Reads the policy YAML (see examples/policy.yaml). Unknown keys are refused by name, so a
/// typo in the policy does not silently allow or deny everything.
public enum PolicyFile {
    public static func parse(_ text: String) throws -> Policy {
        let root: YAMLNode?
        do {
            // Every scalar is read as its text: the policy parses its numbers and durations itself.
            root = try YAML.document(in: text)
        } catch {
            throw PolicyFileError(path: "", message: "not valid YAML: \(error)")
        }
        guard let root else { throw PolicyFileError(path: "", message: "the file is empty") }
        let mapping = try expectMapping(root, "")
        // Keys left out keep Policy's documented defaults.
        var policy = Policy()
        for (keyNode, value) in mapping {
            let key = keyNode.string ?? ""
            switch key {
            case "serviceNames": policy.serviceNames = try strings(value, key)
            case "namespaces": policy.namespaces = try listsByNamespace(value, key)
            case "dnsSuffixes": policy.dnsSuffixes = try strings(value, key)
            case "ipRanges":
                policy.ipRanges = try strings(value, key).enumerated().map { index, text in
                    guard let range = IPRange(text) else {
                        throw PolicyFileError(path: "ipRanges[\(index)]", message: "\"\(text)\" is not a CIDR range such as 10.0.0.0/8 or fd00::/8")
                    }
                    return range
                }
            case "duration":
                for (name, bound) in try expectMapping(value, key) {
                    let field = name.string ?? ""
                    let path = "duration.\(field)"
                    let text = try string(bound, path)
                    guard let seconds = parseGoDuration(text) else {
                        throw PolicyFileError(path: path, message: "\"\(text)\" is not a duration such as 2160h, 90m or 1h30m")
                    }
                    switch field {
                    case "minimum": policy.minimumDuration = seconds
                    case "maximum": policy.maximumDuration = seconds
                    case "default": policy.defaultDuration = seconds
                    default: throw unknownKey(field, in: "duration", known: ["minimum", "maximum", "default"])
                    }
                }
            case "privateKeys":
                for (name, entry) in try expectMapping(value, key) {
                    let field = name.string ?? ""
                    switch field {
                    case "algorithms": policy.keyAlgorithms = try strings(entry, "privateKeys.algorithms")
                    case "minimumRSASize":
                        guard let size = entry.string.flatMap({ Int($0) }) else {
                            throw PolicyFileError(path: "privateKeys.minimumRSASize", message: "expected a number such as 2048")
                        }
                        policy.minimumRSASize = size
                    default: throw unknownKey(field, in: "privateKeys", known: ["algorithms", "minimumRSASize"])
                    }
                }
            case "issuers":
                policy.issuers = [:]
                for (name, entry) in try expectMapping(value, key) {
                    let issuer = name.string ?? ""
                    var namespace: String?
                    var secret: String?
                    for (fieldNode, fieldValue) in try expectMapping(entry, "issuers.\(issuer)") {
                        let field = fieldNode.string ?? ""
                        switch field {
                        case "secretNamespace": namespace = try string(fieldValue, "issuers.\(issuer).secretNamespace")
                        case "secretName": secret = try string(fieldValue, "issuers.\(issuer).secretName")
                        default: throw unknownKey(field, in: "issuers.\(issuer)", known: ["secretNamespace", "secretName"])
                        }
                    }
                    guard let namespace, let secret else {
                        throw PolicyFileError(path: "issuers.\(issuer)", message: "needs secretNamespace and secretName")
                    }
                    policy.issuers[issuer] = SecretReference(namespace: namespace, name: secret)
                }
            case "defaultIssuer": policy.defaultIssuer = try string(value, key)
            case "uriPrefixes": policy.uriPrefixes = try strings(value, key)
            case "namespaceURIPrefixes": policy.namespaceURIPrefixes = try listsByNamespace(value, key)
            case "organizations": policy.organizations = try strings(value, key)
            default:
                throw unknownKey(key, in: "", known: ["serviceNames", "namespaces", "dnsSuffixes", "ipRanges", "duration",
                                                      "privateKeys", "issuers", "defaultIssuer", "uriPrefixes", "namespaceURIPrefixes",
                                                      "organizations"])
            }
        }
        if let problem = policy.problems().first { throw PolicyFileError(path: "", message: problem) }
        return policy
    }

    private static func expectMapping(_ node: YAMLNode, _ path: String) throws -> [(key: YAMLNode, value: YAMLNode)] {
        guard let mapping = node.mapping else {
            throw PolicyFileError(path: path, message: "expected a mapping of keys to values")
        }
        return mapping
    }

    private static func string(_ node: YAMLNode, _ path: String) throws -> String {
        guard let text = node.string else { throw PolicyFileError(path: path, message: "expected a single value") }
        return text
    }

    private static func strings(_ node: YAMLNode, _ path: String) throws -> [String] {
        guard let sequence = node.sequence else { throw PolicyFileError(path: path, message: "expected a list") }
        return try sequence.enumerated().map { index, item in try string(item, "\(path)[\(index)]") }
    }

    /// A mapping of namespace to a list of strings ("namespaces", "namespaceURIPrefixes").
    private static func listsByNamespace(_ node: YAMLNode, _ path: String) throws -> [String: [String]] {
        var lists: [String: [String]] = [:]
        for (namespace, values) in try expectMapping(node, path) {
            let name = namespace.string ?? ""
            lists[name] = try strings(values, "\(path).\(name)")
        }
        return lists
    }

    private static func unknownKey(_ key: String, in parent: String, known: [String]) -> PolicyFileError {
        let hint = closestMatch(to: key, among: known).map { " (did you mean \"\($0)\"?)" } ?? ""
        return PolicyFileError(path: parent, message: "unknown key \"\(key)\"\(hint); known keys are \(bracketed(known))")
    }
}

extension PolicyFile {
    /// The policy `certgate serve` and `certgate validate` use when given no --policy: the
    /// same as examples/policy.yaml (a test keeps the two equal), so a first run on a laptop
    /// answers the examples in the README.
    public static let builtInDefault = """
        serviceNames: []
        namespaces:
          app1: [app1, app2]
        dnsSuffixes: [.svc, .svc.cluster.local]
        ipRanges: [10.0.0.0/8, fd00::/8]
        duration: {minimum: 1h, maximum: 8760h, default: 2160h}
        privateKeys: {algorithms: [ECDSA, RSA, Ed25519], minimumRSASize: 2048}
        issuers:
          default: {secretNamespace: certgate, secretName: certgate-ca}
        defaultIssuer: default
        uriPrefixes: ["spiffe://cluster.local/ns/{namespace}/sa/{serviceName}"]
        namespaceURIPrefixes: {}
        organizations: []
        """

    /// Reads and parses a policy file (for `certgate validate`).
    public static func load(path: String) throws -> Policy {
        guard let bytes = readWholeFile(path) else { throw PolicyFileError(path: "", message: "cannot read \(path)") }
        return try parse(String(decoding: bytes, as: UTF8.self))
    }
}
