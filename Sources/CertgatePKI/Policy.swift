import CertgateCrypto

/// What the control plane allows: the knowledge application owners lack.
///
/// The same policy judges Pkis in the webhook, in the reconciler and in `certgate validate`.
public struct Policy: Sendable, Equatable {
    /// Service names allowed in every namespace.
    public var serviceNames: [String]
    /// Service names allowed per namespace, in addition to ``serviceNames``.
    public var namespaces: [String: [String]]
    /// DNS names must end with one of these (".svc", ".svc.cluster.local"); empty allows none.
    public var dnsSuffixes: [String]
    /// IP addresses must fall in one of these ranges; empty allows none.
    public var ipRanges: [IPRange]
    /// Bounds and default of spec.duration, in seconds.
    public var minimumDuration: Double
    public var maximumDuration: Double
    public var defaultDuration: Double
    /// Allowed key algorithms, as written in spec.privateKey.algorithm.
    public var keyAlgorithms: [String]
    public var minimumRSASize: Int
    /// Issuer name -> the CA Secret that signs for it.
    public var issuers: [String: SecretReference]
    /// The issuer of a Pki that names none.
    public var defaultIssuer: String
    /// spec.uris must equal one of these or continue it past a '/', '?' or '#' (or right after
    /// a prefix that ends in '/'); `{namespace}` and `{serviceName}` stand for the Pki's own.
    public var uriPrefixes: [String]
    /// URI prefixes allowed per namespace, in addition to ``uriPrefixes``.
    public var namespaceURIPrefixes: [String: [String]]
    /// Organizations spec.subject.organizations may name; empty allows none.
    public var organizations: [String]

    public init(serviceNames: [String] = [], namespaces: [String: [String]] = [:], dnsSuffixes: [String] = [".svc", ".svc.cluster.local"],
                ipRanges: [IPRange] = [], minimumDuration: Double = 3600, maximumDuration: Double = 365 * 86400,
                defaultDuration: Double = 90 * 86400, keyAlgorithms: [String] = ["ECDSA", "RSA", "Ed25519"], minimumRSASize: Int = 2048,
                issuers: [String: SecretReference] = ["default": SecretReference(namespace: "certgate", name: "certgate-ca")],
                defaultIssuer: String = "default", uriPrefixes: [String] = [Policy.spiffePrefix],
                namespaceURIPrefixes: [String: [String]] = [:], organizations: [String] = []) {
        self.serviceNames = serviceNames
        self.namespaces = namespaces
        self.dnsSuffixes = dnsSuffixes
        self.ipRanges = ipRanges
        self.minimumDuration = minimumDuration
        self.maximumDuration = maximumDuration
        self.defaultDuration = defaultDuration
        self.keyAlgorithms = keyAlgorithms
        self.minimumRSASize = minimumRSASize
        self.issuers = issuers
        self.defaultIssuer = defaultIssuer
        self.uriPrefixes = uriPrefixes
        self.namespaceURIPrefixes = namespaceURIPrefixes
        self.organizations = organizations
    }

    /// A workload's SPIFFE ID in a cluster with the default trust domain.
    public static let spiffePrefix = "spiffe://cluster.local/ns/{namespace}/sa/{serviceName}"

    /// The URI prefixes a Pki in `namespace` for `serviceName` may use, placeholders filled
    /// in; a prefix naming {serviceName} is left out when the Pki names no service.
    public func allowedURIPrefixes(in namespace: String, serviceName: String?) -> [String] {
        var prefixes: [String] = []
        for prefix in (namespaceURIPrefixes[namespace] ?? []) + uriPrefixes {
            guard let filled = Policy.fill(prefix, namespace: namespace, serviceName: serviceName) else { continue }
            if !prefixes.contains(filled) { prefixes.append(filled) }
        }
        return prefixes
    }

    /// `prefix` with {namespace} and {serviceName} filled in; nil when it names
    /// {serviceName} and there is none. (String.replacing cost a fifth of a review's CPU.)
    static func fill(_ prefix: String, namespace: String, serviceName: String?) -> String? {
        var result = ""
        var rest = Substring(prefix)
        while let open = rest.firstIndex(of: "{") {
            result += rest[..<open]
            rest = rest[open...]
            if rest.hasPrefix("{namespace}") {
                result += namespace
                rest = rest.dropFirst("{namespace}".count)
            } else if rest.hasPrefix("{serviceName}") {
                guard let serviceName, !serviceName.isEmpty else { return nil }
                result += serviceName
                rest = rest.dropFirst("{serviceName}".count)
            } else {
                result += "{"
                rest = rest.dropFirst()
            }
        }
        return result + rest
    }

    /// Whether `uri` is `prefix` or continues it at a boundary, so a prefix ending in
    /// ".../sa/app1" allows ".../sa/app1" and ".../sa/app1/x" but never ".../sa/app10".
    /// Compared byte by byte: String.hasPrefix compares by canonical equivalence, so its
    /// answer and a UTF-8 offset could disagree on a name the client wrote.
    public static func uri(_ uri: String, isUnder prefix: String) -> Bool {
        let uriBytes = uri.utf8, prefixBytes = prefix.utf8
        guard uriBytes.starts(with: prefixBytes) else { return false }
        guard let next = uriBytes.dropFirst(prefixBytes.count).first, prefixBytes.last != UInt8(ascii: "/") else { return true }
        return next == UInt8(ascii: "/") || next == UInt8(ascii: "?") || next == UInt8(ascii: "#")
    }

    /// The RSA sizes issued, smallest first.
    public static let rsaSizes = [2048, 3072, 4096]

    /// The RSA size of a Pki that names none: the smallest the policy allows. Admission
    /// judges and issuance issues this one number.
    public var defaultRSASize: Int { Policy.rsaSizes.first { $0 >= minimumRSASize } ?? Policy.rsaSizes.last! }

    /// Service names allowed in `namespace`: the namespace's own, then the global ones.
    public func allowedServiceNames(in namespace: String) -> [String] {
        var names = namespaces[namespace] ?? []
        for name in serviceNames where !names.contains(name) { names.append(name) }
        return names
    }

    /// Problems that make the policy unusable, for the loader to refuse it with.
    public func problems() -> [String] {
        var problems: [String] = []
        if minimumDuration <= 0 { problems.append("duration.minimum must be positive") }
        if minimumDuration > maximumDuration {
            problems.append("duration.minimum \(formatDuration(minimumDuration)) is longer than duration.maximum \(formatDuration(maximumDuration))")
        }
        if defaultDuration < minimumDuration || defaultDuration > maximumDuration {
            problems.append("duration.default \(formatDuration(defaultDuration)) is outside [\(formatDuration(minimumDuration)), \(formatDuration(maximumDuration))]")
        }
        for algorithm in keyAlgorithms where !Policy.knownKeyAlgorithms.contains(algorithm) {
            problems.append("privateKeys.algorithms: \"\(algorithm)\" is not one of \(bracketed(Policy.knownKeyAlgorithms))")
        }
        if ![2048, 3072, 4096].contains(minimumRSASize) {
            problems.append("privateKeys.minimumRSASize must be 2048, 3072 or 4096, not \(minimumRSASize)")
        }
        if issuers[defaultIssuer] == nil {
            problems.append("defaultIssuer \"\(defaultIssuer)\" is not among issuers \(bracketed(issuers.keys.sorted()))")
        }
        for prefix in uriPrefixes + namespaceURIPrefixes.values.flatMap({ $0 }) {
            // Filled with stand-ins, a prefix must be a URI, and any brace left is an unknown placeholder.
            let filled = Policy.fill(prefix, namespace: "ns", serviceName: "svc") ?? prefix
            if uriProblem(filled) != nil {
                problems.append("uriPrefixes: \"\(prefix)\" is not a URI with a scheme, such as \(Policy.spiffePrefix)")
            }
            if filled.contains("{") || filled.contains("}") {
                problems.append("uriPrefixes: \"\(prefix)\" has a placeholder other than {namespace} and {serviceName}")
            }
        }
        for suffix in dnsSuffixes where !suffix.hasPrefix(".") {
            problems.append("dnsSuffixes: \"\(suffix)\" must start with a dot (\".\(suffix)\")")
        }
        return problems
    }

    public static let knownKeyAlgorithms = ["ECDSA", "RSA", "Ed25519"]
}

/// A Secret by namespace and name.
public struct SecretReference: Sendable, Equatable {
    public var namespace: String
    public var name: String

    public init(namespace: String, name: String) {
        self.namespace = namespace
        self.name = name
    }
}

/// An IPv4 or IPv6 network in CIDR notation.
public struct IPRange: Sendable, Equatable, CustomStringConvertible {
    public let network: [UInt8]
    public let prefixLength: Int

    /// Parses "10.0.0.0/8" or "fd00::/8"; nil if it is not CIDR notation.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let address = parseIPAddress(String(parts[0])), let length = Int(parts[1]),
              length >= 0, length <= address.count * 8 else { return nil }
        network = address
        prefixLength = length
    }

    public func contains(_ address: [UInt8]) -> Bool {
        guard address.count == network.count else { return false }
        var remaining = prefixLength
        for index in 0..<network.count where remaining > 0 {
            let bits = min(8, remaining)
            let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
            if address[index] & mask != network[index] & mask { return false }
            remaining -= bits
        }
        return true
    }

    public var description: String {
        "\(formatIPAddress(network))/\(prefixLength)"
    }
}
