import CertgateSystem
import CertgateJSON
import CertgateHTTP
import CertgateNet
#if canImport(Glibc)
import Glibc
#endif

/// A kind of object the API serves: where its REST paths are.
public struct Resource: Sendable, Equatable {
    /// Empty for the core group (/api/v1).
    public var group: String
    public var version: String
    public var plural: String
    public var namespaced: Bool

    public init(group: String, version: String, plural: String, namespaced: Bool = true) {
        self.group = group
        self.version = version
        self.plural = plural
        self.namespaced = namespaced
    }

    public static let pkis = Resource(group: "certgate.dev", version: "v1", plural: "pkis")
    public static let secrets = Resource(group: "", version: "v1", plural: "secrets")
    public static let events = Resource(group: "", version: "v1", plural: "events")
    public static let configMaps = Resource(group: "", version: "v1", plural: "configmaps")
    public static let pods = Resource(group: "", version: "v1", plural: "pods")
    public static let leases = Resource(group: "coordination.k8s.io", version: "v1", plural: "leases")
    public static let validatingWebhookConfigurations = Resource(group: "admissionregistration.k8s.io", version: "v1",
                                                                 plural: "validatingwebhookconfigurations", namespaced: false)

    /// /api/v1/namespaces/app1/secrets/app1-tls, /apis/certgate.dev/v1/pkis, ...
    public func path(namespace: String?, name: String? = nil, subresource: String? = nil) -> String {
        var path = group.isEmpty ? "/api/\(version)" : "/apis/\(group)/\(version)"
        if namespaced, let namespace { path += "/namespaces/\(escapePathSegment(namespace))" }
        path += "/\(plural)"
        if let name { path += "/\(escapePathSegment(name))" }
        if let subresource { path += "/\(subresource)" }
        return path
    }
}

/// Options of a list or watch.
public struct ListOptions: Sendable, Equatable {
    public var labelSelector: String?
    public var fieldSelector: String?
    public var limit: Int?
    public var continueToken: String?
    public var resourceVersion: String?

    public init(labelSelector: String? = nil, fieldSelector: String? = nil, limit: Int? = nil,
                continueToken: String? = nil, resourceVersion: String? = nil) {
        self.labelSelector = labelSelector
        self.fieldSelector = fieldSelector
        self.limit = limit
        self.continueToken = continueToken
        self.resourceVersion = resourceVersion
    }

    var queryItems: [(String, String)] {
        var items: [(String, String)] = []
        if let labelSelector { items.append(("labelSelector", labelSelector)) }
        if let fieldSelector { items.append(("fieldSelector", fieldSelector)) }
        if let limit { items.append(("limit", String(limit))) }
        if let continueToken { items.append(("continue", continueToken)) }
        if let resourceVersion { items.append(("resourceVersion", resourceVersion)) }
        return items
    }
}

/// The Kubernetes API over HTTPS, one call at a time per thread (the reconciler's workers
/// each wait on their own). API errors are thrown as ``APIStatus`` with the server's code,
/// reason and message; transport failures as the HTTP client's errors.
public final class KubeClient: Sendable {
    private let http: HTTPClient
    private let token: TokenSource?
    public let limits: KubeClientLimits
    private let pacer: RequestPacer
    /// Seconds each request may take, retries included; nil: the HTTP client's own timeout.
    private let requestTimeout: Double?

    /// - Parameter onPacingDetection: told once what the first answers said about API
    ///   Priority and Fairness (automatic pacing only), for the log.
    public convenience init(http: HTTPClient, token: TokenSource?, limits: KubeClientLimits = KubeClientLimits(),
                            onPacingDetection: (@Sendable (PacingDetection) -> Void)? = nil) {
        self.init(http: http, token: token, limits: limits, requestTimeout: nil,
                  pacer: RequestPacer(limits.pacing, onDetection: onPacingDetection))
    }

    private init(http: HTTPClient, token: TokenSource?, limits: KubeClientLimits, requestTimeout: Double?, pacer: RequestPacer) {
        self.http = http
        self.token = token
        self.limits = limits
        self.requestTimeout = requestTimeout
        self.pacer = pacer
    }

    /// The same cluster and connections, with a pacer of its own and every request ending
    /// within `seconds`, retries included: for leader election, whose renewals must end
    /// before renewDeadline however busy the reconciler keeps the shared pacer (client-go
    /// gives leader election a client of its own too).
    public func bounded(requestTimeout seconds: Double) -> KubeClient {
        KubeClient(http: http, token: token, limits: limits, requestTimeout: seconds, pacer: RequestPacer(limits.pacing))
    }

    public convenience init(configuration: ClusterConfiguration, limits: KubeClientLimits = KubeClientLimits(),
                            userAgent: String = "certgate", onPacingDetection: (@Sendable (PacingDetection) -> Void)? = nil) throws {
        self.init(http: try configuration.makeHTTPClient(userAgent: userAgent), token: configuration.token, limits: limits,
                  onPacingDetection: onPacingDetection)
    }

    /// Whether the client paces its requests now (automatic pacing turns this off once the
    /// API server reports API Priority and Fairness).
    public var isPacing: Bool { pacer.isLimiting }

    public func get<T: Decodable>(_ resource: Resource, namespace: String?, name: String, as type: T.Type = T.self) throws -> T {
        try decode(try call("GET", resource.path(namespace: namespace, name: name)), T.self)
    }

    /// GET, with a 404 as nil.
    public func getIfPresent<T: Decodable>(_ resource: Resource, namespace: String?, name: String, as type: T.Type = T.self) throws -> T? {
        do {
            return try get(resource, namespace: namespace, name: name, as: T.self)
        } catch let status as APIStatus where status.isNotFound {
            return nil
        }
    }

    public func list<T: Codable & Sendable>(_ resource: Resource, namespace: String?, options: ListOptions = ListOptions(),
                                            of type: T.Type = T.self) throws -> ObjectList<T> {
        try decode(try call("GET", resource.path(namespace: namespace), query: options.queryItems,
                            accept: T.self == PartialObjectMetadata.self ? Self.metadataOnlyList : Self.json), ObjectList<T>.self)
    }

    public func create<T: Codable>(_ resource: Resource, namespace: String?, _ object: T) throws -> T {
        try decode(try call("POST", resource.path(namespace: namespace), body: try JSONCoding.encode(object)), T.self)
    }

    /// PUT of the whole object; a stale metadata.resourceVersion is a 409 Conflict.
    public func update<T: Codable>(_ resource: Resource, namespace: String?, name: String, _ object: T) throws -> T {
        try decode(try call("PUT", resource.path(namespace: namespace, name: name), body: try JSONCoding.encode(object)), T.self)
    }

    /// PUT to the status subresource (spec changes in it are ignored by the server).
    public func updateStatus<T: Codable>(_ resource: Resource, namespace: String?, name: String, _ object: T) throws -> T {
        try decode(try call("PUT", resource.path(namespace: namespace, name: name, subresource: "status"),
                            body: try JSONCoding.encode(object)), T.self)
    }

    /// An RFC 7386 merge patch (`patch` is the JSON document), optionally of a subresource.
    /// A metadata.resourceVersion in the patch makes it apply to that version only (409 otherwise).
    /// `fieldManager` names the writer in managedFields (default: the User-Agent, "certgate").
    public func mergePatch<T: Decodable>(_ resource: Resource, namespace: String?, name: String, subresource: String? = nil,
                                         patch: [UInt8], fieldManager: String? = nil, as type: T.Type = T.self) throws -> T {
        var path = resource.path(namespace: namespace, name: name, subresource: subresource)
        if let fieldManager { path += "?fieldManager=" + escapeQueryValue(fieldManager) }
        return try decode(try call("PATCH", path, body: patch, contentType: "application/merge-patch+json"), T.self)
    }

    /// A strategic merge patch, which built-in kinds take (not custom resources): lists with
    /// a merge key, such as a ValidatingWebhookConfiguration's webhooks by name, merge item
    /// by item instead of being replaced.
    public func strategicMergePatch<T: Decodable>(_ resource: Resource, namespace: String?, name: String,
                                                  patch: [UInt8], as type: T.Type = T.self) throws -> T {
        try decode(try call("PATCH", resource.path(namespace: namespace, name: name), body: patch,
                            contentType: "application/strategic-merge-patch+json"), T.self)
    }

    /// Deletes an object; with `propagationPolicy` ("Foreground", "Background", "Orphan")
    /// in DeleteOptions, as kubectl delete --cascade and GitOps tools send it.
    public func delete(_ resource: Resource, namespace: String?, name: String, propagationPolicy: String? = nil) throws {
        let options = propagationPolicy.map {
            Array(#"{"kind":"DeleteOptions","apiVersion":"meta.k8s.io/v1","propagationPolicy":"\#($0)"}"#.utf8)
        }
        _ = try call("DELETE", resource.path(namespace: namespace, name: name), body: options)
    }

    /// A watch the server has not ended this long after its timeoutSeconds, with nothing
    /// received meanwhile, is abandoned: the connection is dead or black-holed.
    public static let watchSilenceGraceSeconds = 60.0

    /// Watches from `options.resourceVersion`, calling `onEvent` for each event as it
    /// arrives until the server ends the stream or `onEvent` returns false; throws a
    /// TimeoutError when nothing arrives for timeoutSeconds plus `silenceGrace`. The caller
    /// restarts the watch (from the last resourceVersion it saw) when it ends.
    public func watch<T: Codable & Sendable>(_ resource: Resource, namespace: String?, options: ListOptions = ListOptions(),
                                             timeoutSeconds: Int = 300, silenceGrace: Double = KubeClient.watchSilenceGraceSeconds,
                                             of type: T.Type = T.self, cancellation: StreamCancellation? = nil,
                                             onEvent: (WatchEvent<T>) throws -> Bool) throws {
        var query = options.queryItems
        query.append(("watch", "true"))
        query.append(("allowWatchBookmarks", "true"))
        query.append(("timeoutSeconds", String(timeoutSeconds)))
        let request = try makeRequest("GET", resource.path(namespace: namespace), query: query, body: nil, contentType: nil,
                                      accept: T.self == PartialObjectMetadata.self ? Self.metadataOnlyWatch : Self.json)
        var stream = WatchStreamDecoder<T>()
        var failureBody: [UInt8] = []
        var failure: APIStatus?
        try http.stream(request, cancellation: cancellation, idleTimeout: Double(timeoutSeconds) + silenceGrace) { head in
            if head.status >= 300 { failure = APIStatus(code: head.status, reason: nil, message: nil) }
            return true
        } body: { piece in
            if failure != nil {
                // A Status body is small; past a bound the rest is not worth holding.
                if failureBody.count < 64 * 1024 { failureBody.append(contentsOf: piece) }
                return true
            }
            return try stream.append(piece, onEvent: onEvent)
        }
        if let failure {
            throw (try? JSONCoding.decode(APIStatus.self, from: failureBody)) ?? failure
        }
    }

    // MARK: Requests

    static let json = "application/json"
    /// What client-go's metadata informers ask for: lists and watches of PartialObjectMetadata
    /// carry names, labels and owners without the objects' data (a Secret's certificates,
    /// a Helm release's megabytes), with plain JSON as the fallback of servers without it.
    static let metadataOnlyList = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
    static let metadataOnlyWatch = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"

    private func call(_ method: String, _ path: String, query: [(String, String)] = [], body: [UInt8]? = nil,
                      contentType: String? = "application/json", accept: String = KubeClient.json) throws -> HTTPResponse {
        var refreshed = false
        var retries = 0
        let deadline = requestTimeout.map { monotonicNanoseconds() + UInt64($0 * 1e9) }
        func remaining() throws -> Double? {
            guard let deadline else { return nil }
            let now = monotonicNanoseconds()
            guard now < deadline else { throw HTTPClientError("\(method) \(path) did not finish within \(requestTimeout!) s") }
            return Double(deadline - now) / 1e9
        }
        while true {
            let request = try makeRequest(method, path, query: query, body: body, contentType: contentType, accept: accept,
                                          refreshToken: refreshed)
            pacer.wait()
            let response = try http.send(request, timeout: try remaining())
            pacer.observe(response.headers)
            if response.status == 401, token != nil, !refreshed {
                refreshed = true  // the token may have rotated since it was read
                continue
            }
            if retries < limits.maxRetries,
               let delay = limits.retryDelay(method: method, status: response.status, retryAfter: response.headers["retry-after"]) {
                retries += 1
                if let left = try remaining(), left <= delay { throw apiError(response) }
                usleep(UInt32(delay * 1_000_000))
                continue
            }
            guard (200..<300).contains(response.status) else { throw apiError(response) }
            return response
        }
    }

    private func makeRequest(_ method: String, _ path: String, query: [(String, String)], body: [UInt8]?,
                             contentType: String?, accept: String = KubeClient.json, refreshToken: Bool = false) throws -> HTTPRequest {
        var headers: HTTPHeaders = ["accept": accept]
        if let token { headers.add("authorization", "Bearer \(try token.current(refresh: refreshToken))") }
        if body != nil, let contentType { headers.add("content-type", contentType) }
        let queryText = query.isEmpty ? nil : query.map { "\($0.0)=\(escapeQueryValue($0.1))" }.joined(separator: "&")
        return HTTPRequest(method: method, path: path, query: queryText, headers: headers, body: body ?? [])
    }

    private func decode<T: Decodable>(_ response: HTTPResponse, _ type: T.Type) throws -> T {
        do {
            return try JSONCoding.decode(T.self, from: response.body)
        } catch {
            throw APIStatus(code: response.status, reason: "BadResponse", message: "the answer is not a \(T.self): \(error)")
        }
    }

    private func apiError(_ response: HTTPResponse) -> APIStatus {
        if let status = try? JSONCoding.decode(APIStatus.self, from: response.body) { return status }
        return APIStatus(code: response.status, reason: reasonPhrase(response.status),
                         message: String(decoding: response.body.prefix(512), as: UTF8.self))
    }
}

extension APIStatus {
    public var isNotFound: Bool { code == 404 }
    public var isConflict: Bool { code == 409 && reason == "Conflict" }
    public var isAlreadyExists: Bool { code == 409 && reason == "AlreadyExists" }
    /// The resourceVersion is too old: list again.
    public var isGone: Bool { code == 410 }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
func escapeQueryValue(_ value: String) -> String {
    var out = ""
    for byte in value.utf8 {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
            out.unicodeScalars.append(Unicode.Scalar(byte))
        default:
            let hex = Array("0123456789ABCDEF".unicodeScalars)
            out += "%"
            out.unicodeScalars.append(hex[Int(byte >> 4)])
            out.unicodeScalars.append(hex[Int(byte & 0xF)])
        }
    }
    return out
}

func escapePathSegment(_ value: String) -> String {
    escapeQueryValue(value)
}
