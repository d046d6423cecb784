import CertgateSystem
import CertgateJSON
import CertgateLocking
import CertgateCrypto
import CertgateHTTP
import CertgateNet
import CertgateTLS
import CertgateYAML
import Synchronization

/// How to reach and authenticate to a Kubernetes API server, resolved as client-go does.
public struct ClusterConfiguration: Sendable {
    /// The API server's host (name or IP literal) and port.
    public var host: String
    public var port: UInt16
    public var tls: TLSClientConfiguration
    /// A bearer token, if the configuration has one; read again as it rotates.
    public var token: TokenSource?
    /// Where this came from, for logs and errors ("in-cluster", "kubeconfig /root/.kube/config, context kind").
    public var source: String
    /// The namespace the kubeconfig's context names (kubectl's default for -n), if any.
    public var namespace: String?

    public init(host: String, port: UInt16, tls: TLSClientConfiguration, token: TokenSource?, source: String, namespace: String? = nil) {
        self.host = host
        self.port = port
        self.tls = tls
        self.token = token
        self.source = source
        self.namespace = namespace
    }
}

/// A configuration that cannot be used, with what to fix.
public struct ClusterConfigurationError: Error, CustomStringConvertible, Equatable, Sendable {
    /// What kind of failure: callers act on this, never on the message's words.
    public enum Reason: Sendable, Equatable {
        /// None of the places a configuration can come from has one.
        case noConfigurationFound
        /// A configuration was found and cannot be used.
        case unusable
    }

    public let message: String
    public let reason: Reason
    public init(_ message: String, reason: Reason = .unusable) {
        self.message = message
        self.reason = reason
    }
    public var description: String { message }
}

/// A bearer token from a fixed value or from a file that is read again as it rotates
/// (projected service account tokens are replaced about every hour).
public final class TokenSource: Sendable {
    private let fixed: String?
    private let path: String?
    private let cached = Locked<(token: String, readAt: UInt64)?>(nil)
    /// client-go reads the token file again after a minute.
    private let maxAge: UInt64 = 60 * 1_000_000_000

    public init(token: String) {
        fixed = token
        path = nil
    }

    public init(file: String) {
        fixed = nil
        path = file
    }

    /// The token to send now. `refresh` forces a new read (after a 401).
    public func current(refresh: Bool = false) throws -> String {
        if let fixed { return fixed }
        let now = monotonicNanoseconds()
        if !refresh, let cached = cached.withLock({ $0 }), now &- cached.readAt < maxAge { return cached.token }
        guard let path, let bytes = readWholeFile(path) else {
            throw ClusterConfigurationError("cannot read the service account token \(path ?? "")")
        }
        let token = String(decoding: bytes, as: UTF8.self).trimmingWhitespace()
        cached.withLock { $0 = (token, now) }
        return token
    }
}

public enum ClusterConfigurationLoader {
    public static let serviceAccountDirectory = "/var/run/secrets/kubernetes.io/serviceaccount"

    /// client-go's order: an explicit kubeconfig, then $KUBECONFIG, then in-cluster, then
    /// ~/.kube/config. `allowInsecure` must be set for a kubeconfig's insecure-skip-tls-verify.
    public static func load(kubeconfig explicit: String? = nil, context: String? = nil, allowInsecure: Bool = false,
                            environment: [String: String], serviceAccountDirectory: String = serviceAccountDirectory) throws -> ClusterConfiguration {
        if let explicit, !explicit.isEmpty {
            return try kubeconfig(path: explicit, context: context, allowInsecure: allowInsecure)
        }
        if let fromEnvironment = environment["KUBECONFIG"], !fromEnvironment.isEmpty {
            // Several files joined with ':' are merged by kubectl; Certgate reads the first that exists.
            let paths = fromEnvironment.split(separator: ":").map(String.init)
            guard let path = paths.first(where: { readWholeFile($0) != nil }) else {
                throw ClusterConfigurationError("KUBECONFIG names \(fromEnvironment), and none of it can be read")
            }
            return try kubeconfig(path: path, context: context, allowInsecure: allowInsecure)
        }
        if environment["KUBERNETES_SERVICE_HOST"] != nil {
            return try inCluster(environment: environment, directory: serviceAccountDirectory)
        }
        if let home = environment["HOME"], readWholeFile("\(home)/.kube/config") != nil {
            return try kubeconfig(path: "\(home)/.kube/config", context: context, allowInsecure: allowInsecure)
        }
        throw ClusterConfigurationError("no Kubernetes configuration found: pass --kubeconfig, set KUBECONFIG, "
            + "run in a cluster (KUBERNETES_SERVICE_HOST and a service account), or create ~/.kube/config", reason: .noConfigurationFound)
    }

    /// The pod's service account: KUBERNETES_SERVICE_HOST/PORT, the CA and token files.
    public static func inCluster(environment: [String: String], directory: String = serviceAccountDirectory) throws -> ClusterConfiguration {
        guard let host = environment["KUBERNETES_SERVICE_HOST"], !host.isEmpty,
              let portText = environment["KUBERNETES_SERVICE_PORT"], let port = UInt16(portText) else {
            throw ClusterConfigurationError("in-cluster configuration needs KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT")
        }
        guard let caPEM = readWholeFile("\(directory)/ca.crt") else {
            throw ClusterConfigurationError("cannot read the cluster CA \(directory)/ca.crt (is a service account token mounted?)")
        }
        let roots = try certificates(caPEM, "the cluster CA \(directory)/ca.crt")
        let token = TokenSource(file: "\(directory)/token")
        _ = try token.current()
        return ClusterConfiguration(host: host, port: port, tls: TLSClientConfiguration(trustRoots: roots), token: token, source: "in-cluster")
    }

    /// A kubeconfig file's current (or named) context.
    public static func kubeconfig(path: String, context requested: String? = nil, allowInsecure: Bool = false) throws -> ClusterConfiguration {
        guard let bytes = readWholeFile(path) else { throw ClusterConfigurationError("cannot read the kubeconfig \(path)") }
        return try kubeconfig(text: String(decoding: bytes, as: UTF8.self), path: path, context: requested, allowInsecure: allowInsecure)
    }

    /// A kubeconfig's current (or named) context from its text; `path` names it in errors,
    /// and relative certificate and token files are read from its directory.
    public static func kubeconfig(text: String, path: String, context requested: String? = nil,
                                  allowInsecure: Bool = false) throws -> ClusterConfiguration {
        let root: YAMLNode?
        do {
            root = try YAML.document(in: text)
        } catch {
            throw ClusterConfigurationError("the kubeconfig \(path) is not valid YAML: \(error)")
        }
        guard let document = root, document.mapping != nil else { throw ClusterConfigurationError("the kubeconfig \(path) is empty") }
        let directory = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."

        guard let contextName = requested ?? document["current-context"]?.string, !contextName.isEmpty else {
            throw ClusterConfigurationError("the kubeconfig \(path) has no current-context; pass --context")
        }
        let contextEntry = try named(document, "contexts", contextName, "context", path)
        guard let clusterName = contextEntry["cluster"]?.string else {
            throw ClusterConfigurationError("context \(contextName) in \(path) names no cluster")
        }
        let cluster = try named(document, "clusters", clusterName, "cluster", path)
        let user = try contextEntry["user"]?.string.map { try named(document, "users", $0, "user", path) }

        guard let server = cluster["server"]?.string, let address = HostPort(httpsURL: server) else {
            throw ClusterConfigurationError("cluster \(clusterName) in \(path) has no https server URL (got \(cluster["server"]?.string ?? "none"))")
        }
        var tls = TLSClientConfiguration()
        if cluster["insecure-skip-tls-verify"]?.string == "true" {
            guard allowInsecure else {
                throw ClusterConfigurationError("cluster \(clusterName) in \(path) sets insecure-skip-tls-verify; "
                    + "refused unless --allow-insecure-kubeconfig is given")
            }
            tls.insecureSkipVerify = true
        } else if let pem = try material(cluster, "certificate-authority", directory, "the CA of cluster \(clusterName)") {
            tls.trustRoots = try certificates(pem, "the CA of cluster \(clusterName)")
        }
        var token: TokenSource?
        if let user {
            if let certificatePEM = try material(user, "client-certificate", directory, "the client certificate of user \(contextEntry["user"]!.string!)") {
                tls.clientCertificateChain = try certificates(certificatePEM, "the client certificate")
                guard let keyPEM = try material(user, "client-key", directory, "the client key") else {
                    throw ClusterConfigurationError("user \(contextEntry["user"]!.string!) in \(path) has a client certificate but no client-key")
                }
                do { tls.clientKey = try PrivateKey(pem: keyPEM) } catch {
                    throw ClusterConfigurationError("the client key in \(path) does not parse: \(error)")
                }
            }
            if let value = user["token"]?.string {
                token = TokenSource(token: value)
            } else if let file = user["tokenFile"]?.string {
                token = TokenSource(file: file.hasPrefix("/") ? file : "\(directory)/\(file)")
            }
        }
        return ClusterConfiguration(host: address.host, port: address.port, tls: tls, token: token,
                                    source: "kubeconfig \(path), context \(contextName)",
                                    namespace: contextEntry["namespace"]?.string.flatMap { $0.isEmpty ? nil : $0 })
    }

    /// The entry called `name` in the list `list` (kubeconfig's `- name: x; cluster: {...}` form).
    private static func named(_ document: YAMLNode, _ list: String, _ name: String, _ field: String, _ path: String) throws -> YAMLNode {
        let entries = document[list]?.sequence ?? []
        for entry in entries where entry["name"]?.string == name {
            guard let body = entry[field], body.mapping != nil else { break }
            return body
        }
        throw ClusterConfigurationError("the kubeconfig \(path) has no \(field) named \"\(name)\"")
    }

    /// `key-data` (base64) or `key` (a file, relative to the kubeconfig's directory).
    private static func material(_ entry: YAMLNode, _ key: String, _ directory: String, _ what: String) throws -> [UInt8]? {
        if let data = entry["\(key)-data"]?.string {
            guard let decoded = Base64.decode(data.filter { !$0.isWhitespace }) else {
                throw ClusterConfigurationError("\(key)-data of \(what) is not base64")
            }
            return Array(decoded)
        }
        if let file = entry[key]?.string {
            let full = file.hasPrefix("/") ? file : "\(directory)/\(file)"
            guard let bytes = readWholeFile(full) else { throw ClusterConfigurationError("cannot read \(what) from \(full)") }
            return bytes
        }
        return nil
    }

    private static func certificates(_ pem: [UInt8], _ what: String) throws -> [Certificate] {
        do { return try Certificate.chain(pem: pem) } catch {
            throw ClusterConfigurationError("\(what) does not parse: \(error)")
        }
    }
}

extension ClusterConfiguration {
    /// An HTTPS client for this API server. The caller adds `Authorization: Bearer` from
    /// ``token`` to each request, so a rotated token is picked up. The API server names the
    /// writer in managedFields after the User-Agent up to its first "/".
    public func makeHTTPClient(requestTimeout: Double = 30, userAgent: String = "certgate") throws -> HTTPClient {
        var configuration = HTTPClientConfiguration(host: host, port: port, tls: try TLSClientContext(tls))
        configuration.requestTimeout = requestTimeout
        configuration.userAgent = userAgent
        return HTTPClient(configuration: configuration)
    }
}
