import CertgateSystem
import CertgateCrypto
import CertgateHTTP
import CertgateKube
import CertgateMetrics
import CertgateNet
import CertgateTLS
import CertgateTestSupport
import CertgateYAML
import Foundation
import Logging

/// An in-process Kubernetes API server for tests: HTTPS on loopback, objects in memory, the
/// real paths and wire format (JSON, Status errors, resourceVersion, watch streams).
///
/// It is held to kube-apiserver 1.28 by TestAPIServerConformanceTests, which re-sends every
/// request recorded in shared/fixtures/apiserver-1.28 and compares the answers: where they
/// differ, the recording wins. What it does as the real server does: a cluster-wide
/// resourceVersion counter; uid, creationTimestamp, generation (pkis) and managedFields set
/// on writes; 409 AlreadyExists and Conflict, 422 Invalid (a stale or missing
/// resourceVersion, and the CRD's types and enums), 404, 401 for an unknown token and 403
/// for the anonymous user and ungranted ServiceAccounts; pruning of fields the CRD does not
/// declare (400 under fieldValidation=Strict); the status subresource of pkis; merge patch,
/// and strategic merge patch of built-in kinds; delete in the background or the foreground;
/// label and field selectors; limit and continue tokens in the real form, "continue":"" on
/// custom resources' last pages; PartialObjectMetadataList for a metadata-only Accept;
/// watches that replay from a resourceVersion, follow live changes, send BOOKMARKs as the
/// watch cache does, and end with an ERROR 410 before the compaction point; discovery and
/// /version. Faults on demand: ``failNext(_:status:retryAfter:)``, ``stallNext(seconds:)``,
/// ``dropWatches(abruptly:)``, ``compact()``.
public final class TestAPIServer: @unchecked Sendable {
    // @unchecked: all mutable state is guarded by `lock`; the HTTP server calls in from loop threads.
    public let pki: TestPKI
    public let token: String
    public private(set) var port: UInt16 = 0
    private let directory: TemporaryDirectory
    private let group: EventLoopGroup
    private var server: HTTPServer!
    private let lock = NSLock()
    private var objects: [String: [String: Any]] = [:]
    private var history: [(version: Int, type: String, key: String, object: [String: Any], previous: [String: Any]?)] = []
    private var resourceVersion = 100
    private var compactedBelow = 0
    private var watchers: [Watcher] = []
    private var failures: [(status: Int, retryAfter: Int?, only: String?)] = []
    /// Bearer tokens of identities without RBAC grants (ServiceAccounts), by token.
    private var ungrantedUsers: [String: String] = [:]
    /// How often a watch that saw changes gets a BOOKMARK (the watch cache's minute).
    private let bookmarkInterval: Double
    /// The structural schema of pkis, from a CRD file.
    private let pkiSchema: YAMLNode?
    /// The CRD's printer columns, for kubectl get's Tables.
    private let pkiColumns: PrinterColumns
    private var stalls: [Double] = []
    /// Paths containing these are answered this many seconds late, until cleared.
    private var slowPaths: [String: Double] = [:]
    private var served: [String] = []
    private var logged: [LoggedRequest] = []
    /// Requests served, for tests to inspect ("GET /api/v1/namespaces/app1/secrets/x").
    public var requests: [String] { locked { served } }

    /// The logged requests from the `start`th on, of clients whose User-Agent starts with
    /// `userAgentPrefix`, counted as "VERB resource": "GET secrets" (a collection: a list or
    /// a watch), "GET secrets/one" (a named object), "PUT pkis/status" (a subresource).
    public func requestCounts(since start: Int, userAgentPrefix: String = "") -> [String: Int] {
        let plurals: Set<Substring> = ["pkis", "secrets", "events", "pods", "configmaps", "leases"]
        var counts: [String: Int] = [:]
        for request in requestLog.dropFirst(start) where request.userAgent.hasPrefix(userAgentPrefix) {
            let parts = request.path.split(separator: "/")
            guard let index = parts.lastIndex(where: { plurals.contains($0) }) else { continue }
            let rest = parts.count - index - 1
            let resource = String(parts[index]) + (rest == 2 ? "/\(parts.last!)" : rest == 1 ? "/one" : "")
            counts["\(request.method) \(resource)", default: 0] += 1
        }
        return counts
    }
    /// Every authenticated request as it arrived, with who sent it and when.
    public var requestLog: [LoggedRequest] { locked { logged } }
    /// Named clients (replicas) by their "Bearer TOKEN" header; the default token is "default".
    private var clientsByAuthorization: [String: String] = [:]
    /// Clients cut off from the server: their requests are logged, never applied, and their
    /// connections dropped, as across a broken network, until ``heal(_:)``.
    private var partitioned: Set<String> = []

    /// A request as it reached the server.
    public struct LoggedRequest: Sendable {
        public let client: String
        public let method: String
        public let path: String
        public let userAgent: String
        /// Monotonic seconds at arrival.
        public let time: Double
        /// False when the client was partitioned: the request never took effect.
        public let applied: Bool

        public var isWrite: Bool { ["POST", "PUT", "PATCH", "DELETE"].contains(method) }
    }

    private let reportsPriorityAndFairness: Bool

    struct Watcher {
        let kind: ResourceKind
        let namespace: String?
        let selector: Selector
        let stream: ResponseStream
        /// Asked for PartialObjectMetadata: objects go out as their metadata only.
        let metadataOnly: Bool
        let bookmarks: Bool
        /// Whether a live event went out since the watch began or since its last BOOKMARK.
        var changedSinceBookmark = false
    }

    /// `bookmarkInterval`: the real server's is a minute; tests of bookmarks shorten it.
    /// `pkiCRD`: the CustomResourceDefinition of pkis to serve (the chart's by default).
    /// `reportsPriorityAndFairness`: answer with API Priority and Fairness's headers, as a
    /// real 1.28 server does; false plays a server without it.
    public init(token: String = "test-token", bookmarkInterval: Double = 60, pkiCRD: String = TestAPIServer.chartCRD,
                reportsPriorityAndFairness: Bool = true) throws {
        self.reportsPriorityAndFairness = reportsPriorityAndFairness
        self.bookmarkInterval = bookmarkInterval
        pkiSchema = TestAPIServer.openAPISchema(crdFile: pkiCRD)
        pkiColumns = PrinterColumns(crdFile: pkiCRD)
        directory = TemporaryDirectory()
        pki = try TestPKI(in: directory)
        self.token = token
        let serving = ServingCertificate(files: ServingCertificateFiles(certificateFile: pki.certificateFile, keyFile: pki.keyFile))
        if let error = serving.reload() { throw error }
        group = try EventLoopGroup(count: 1, namePrefix: "test-apiserver")
        var router = Router()
        router.fallback = { [unowned self] in self.handle($0) }
        var logger = Logger(label: "test-apiserver")
        logger.logLevel = .critical
        server = HTTPServer(configuration: HTTPServerConfiguration(name: "apiserver", addresses: [try SocketAddress(host: "127.0.0.1", port: 0)], tls: serving),
                            router: router, group: group, metrics: ServerMetrics(registry: MetricsRegistry()), logger: logger)
        port = try server.start()[0].port
    }

    /// How a client reaches this server with its token.
    public func clusterConfiguration(token: String? = nil) -> ClusterConfiguration {
        ClusterConfiguration(host: "127.0.0.1", port: port, tls: TLSClientConfiguration(trustRoots: [pki.ca]),
                             token: TokenSource(token: token ?? self.token), source: "test API server")
    }

    /// Writes a kubeconfig that reaches this server with its CA and token, for a process
    /// such as `certgate serve --kubeconfig` to use.
    public func writeKubeconfig(to path: String, token: String? = nil) throws {
        let ca = try Data(contentsOf: URL(fileURLWithPath: pki.caFile)).base64EncodedString()
        try """
            apiVersion: v1
            kind: Config
            current-context: test
            clusters: [{name: test, cluster: {server: "https://127.0.0.1:\(port)", certificate-authority-data: \(ca)}}]
            contexts: [{name: test, context: {cluster: test, user: test}}]
            users: [{name: test, user: {token: \(token ?? self.token)}}]
            """.write(toFile: path, atomically: true, encoding: .utf8)
    }

    public func stop() {
        dropWatches()
        server.shutdown(gracePeriod: 1)
        group.stopAndWait()
    }

    // MARK: Faults

    /// The next `count` requests are answered with `status` (429 or 5xx) and Retry-After.
    public func failNext(_ count: Int, status: Int, retryAfter: Int? = nil) {
        locked { failures += Array(repeating: (status, retryAfter, nil), count: count) }
    }

    /// The next `count` requests whose "METHOD PATH" ends with `request` (as "PUT .../status")
    /// are answered with `status`; others are served.
    public func failNext(_ count: Int, status: Int, onlyRequestsEndingWith request: String) {
        locked { failures += Array(repeating: (status, nil, request), count: count) }
    }

    /// Every request whose path contains `fragment` is answered `seconds` late (nil: on time
    /// again), as an API server whose storage for one resource crawls.
    public func slowDown(requestsContaining fragment: String, by seconds: Double?) {
        locked { slowPaths[fragment] = seconds }
    }

    /// The next request is answered only after `seconds` (its head at once, its body then),
    /// as an overloaded API server would; the server keeps serving others meanwhile.
    public func stallNext(seconds: Double) {
        locked { stalls.append(seconds) }
    }

    /// Ends every open watch: cleanly (as a watch timeout does), or `abruptly` by closing
    /// the connection mid-stream (as a crashed API server or a broken network does).
    public func dropWatches(abruptly: Bool = false) {
        let open = locked { () -> [Watcher] in
            let open = watchers
            watchers.removeAll()
            return open
        }
        for watcher in open {
            if abruptly { watcher.stream.abort() } else { watcher.stream.finish() }
        }
    }

    /// Forgets history: watches from an older resourceVersion get 410 Expired, and so do
    /// lists that ask for an exact older version.
    public func compact() {
        locked { compactedBelow = resourceVersion + 1 }
    }

    /// Forgets history older than `version`.
    public func compact(below version: Int) {
        locked { compactedBelow = max(compactedBelow, version) }
    }

    /// A token for a client named `name` (a replica), with the default token's rights; its
    /// requests are logged under that name.
    public func addClient(_ name: String) -> String {
        let token = "client-\(name)-\(UUID().uuidString.lowercased())"
        locked { clientsByAuthorization["Bearer \(token)"] = name }
        return token
    }

    /// Cuts `client` off: its requests are logged, not applied, and their connections dropped.
    public func partition(_ client: String) {
        locked { _ = partitioned.insert(client) }
    }

    /// Ends a partition: later requests of `client` are served.
    public func heal(_ client: String) {
        locked { _ = partitioned.remove(client) }
    }

    /// Monotonic seconds, as ``LoggedRequest/time`` counts.
    public static func now() -> Double { Double(monotonicNanoseconds()) / 1e9 }

    /// A bearer token of the ServiceAccount `namespace/name`, authenticated but granted
    /// nothing, as `kubectl create token` gives before any RoleBinding exists.
    public func serviceAccountToken(namespace: String, name: String) -> String {
        let token = "sa-\(namespace)-\(name)-\(UUID().uuidString.lowercased())"
        locked { ungrantedUsers["Bearer \(token)"] = "system:serviceaccount:\(namespace):\(name)" }
        return token
    }

    /// Stores `object` as it is (uid, resourceVersion and creationTimestamp filled in when
    /// missing) without an event, as if it had been there before the test: to set up the
    /// state a recording was made in. The resourceVersion counter moves past its version.
    public func seed(_ object: [String: Any]) {
        guard let kind = ResourceKind.all.first(where: { $0.apiVersion == object["apiVersion"] as? String && $0.kind == object["kind"] as? String })
        else { return }
        var object = object
        var metadata = object["metadata"] as? [String: Any] ?? [:]
        guard let name = metadata["name"] as? String else { return }
        locked {
            if metadata["resourceVersion"] == nil {
                resourceVersion += 1
                metadata["resourceVersion"] = String(resourceVersion)
            }
            resourceVersion = max(resourceVersion, Int(metadata["resourceVersion"] as? String ?? "") ?? 0)
            metadata["uid"] = metadata["uid"] ?? UUID().uuidString.lowercased()
            metadata["creationTimestamp"] = metadata["creationTimestamp"] ?? timestamp()
            object["metadata"] = metadata
            objects[key(kind, metadata["namespace"] as? String, name)] = object
        }
    }

    /// Moves the resourceVersion counter to at least `version`, as a cluster that has lived.
    public func advanceResourceVersion(to version: Int) {
        locked { resourceVersion = max(resourceVersion, version) }
    }

    /// Watches open now.
    public var openWatches: Int { locked { watchers.filter { !$0.stream.isCancelled }.count } }

    /// The stored object, as JSON.
    public func object(_ resource: Resource, namespace: String?, name: String) -> [String: Any]? {
        locked { objects[key(ResourceKind(resource), namespace, name)] }
    }

    public var currentResourceVersion: Int { locked { resourceVersion } }

    // MARK: Requests

    private func handle(_ request: HTTPRequest) -> HTTPResponse {
        var response = authorizedResponse(request)
        // As recorded (get-404-curl-useragent-pretty.http): curl's own User-Agent gets
        // indented JSON without the final newline every other client gets.
        if (request.headers["user-agent"] ?? "").hasPrefix("curl"), response.stream == nil,
           let object = try? JSONSerialization.jsonObject(with: Data(response.body)),
           let pretty = try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .withoutEscapingSlashes]) {
            response.body = Array(pretty)
        }
        return response
    }

    private func authorizedResponse(_ request: HTTPRequest) -> HTTPResponse {
        locked { served.append("\(request.method) \(request.path)") }
        if request.path == "/version" {
            // Served to anyone, always indented (version-200.http).
            return json(200, versionInfo, pretty: true)
        }
        let authorization = request.headers["authorization"]
        let client = authorization == "Bearer \(token)" ? "default" : authorization.flatMap { value in locked { clientsByAuthorization[value] } }
        if let client {
            let cutOff = locked { () -> Bool in
                let cutOff = partitioned.contains(client)
                logged.append(LoggedRequest(client: client, method: request.method, path: request.path,
                                            userAgent: request.headers["user-agent"] ?? "", time: TestAPIServer.now(), applied: !cutOff))
                return cutOff
            }
            if cutOff {
                // The connection drops before an answer could be read in full.
                let stream = ResponseStream()
                stream.abort()
                return HTTPResponse(status: 502, headers: ["content-type": "application/json"], stream: stream)
            }
        }
        switch authorization {
        case _ where client != nil: break
        case nil:
            // No credentials: the anonymous user, whom RBAC refuses (no-token-403-anonymous.http).
            return forbidden(request, user: "system:anonymous")
        case let authorization?:
            guard let user = locked({ ungrantedUsers[authorization] }) else { return status(401, "Unauthorized", "Unauthorized") }
            return forbidden(request, user: user)
        }
        var response = admittedResponse(request)
        if reportsPriorityAndFairness {
            // As recorded (list-pkis.http): API Priority and Fairness names the flow schema
            // and priority level that handled every authenticated request.
            response.headers.add("X-Kubernetes-Pf-Flowschema-Uid", "ba218881-fabe-482a-a236-ef11d6edbd0a")
            response.headers.add("X-Kubernetes-Pf-Prioritylevel-Uid", "114d1a67-c317-4b55-a869-f0696e2b5262")
        }
        return response
    }

    /// The answer to an authenticated request: an injected failure or delay, or the route's.
    private func admittedResponse(_ request: HTTPRequest) -> HTTPResponse {
        let line = "\(request.method) \(request.path)"
        if let failure = locked({ () -> (status: Int, retryAfter: Int?, only: String?)? in
            guard let index = failures.firstIndex(where: { $0.only.map { line.hasSuffix($0) } ?? true }) else { return nil }
            return failures.remove(at: index)
        }) {
            var response = status(failure.status, [409: "Conflict", 429: "TooManyRequests"][failure.status] ?? "InternalError",
                                  "injected failure", retryAfter: failure.retryAfter)
            if let retryAfter = failure.retryAfter { response.headers.add("retry-after", String(retryAfter)) }
            return response
        }
        if let delay = locked({ stalls.isEmpty ? slowPaths.first { request.path.contains($0.key) }?.value : stalls.removeFirst() }) {
            let answer = route(request)
            let stream = ResponseStream()
            DispatchQueue.global().asyncAfter(deadline: .now() + delay) {
                stream.write(answer.body)
                stream.finish()
            }
            return HTTPResponse(status: answer.status, headers: answer.headers, stream: stream)
        }
        return route(request)
    }

    private func route(_ request: HTTPRequest) -> HTTPResponse {
        if let resources = discovery(request.path) { return json(200, resources) }
        guard let target = Target(path: request.path) else {
            return status(404, "NotFound", "the server could not find the requested resource")
        }
        var request = request
        var warnings: [String] = []
        if ["POST", "PUT", "PATCH"].contains(request.method), target.kind.isCustomResource, target.subresource == nil,
           var object = parse(request.body), let schema = pkiSchema {
            // As a real server does with the CRD's structural schema (create-400-unknown-field-strict.http,
            // create-201-unknown-field-pruned-warning.http): Strict refuses unknown fields, Warn
            // (the default) and Ignore drop them, Warn saying so in Warning headers.
            let unknown = pruneUnknownFields(&object, schema: schema)
            let validation = request.queryValue("fieldValidation") ?? "Warn"
            if !unknown.isEmpty && validation == "Strict" {
                return status(400, "BadRequest", "\(target.kind.kind) in version \"\(target.kind.version)\" cannot be handled as a "
                    + "\(target.kind.kind): strict decoding error: " + unknown.map { "unknown field \"\($0)\"" }.joined(separator: ", "))
            }
            if validation != "Ignore" { warnings = unknown.map { "299 - \"unknown field \\\"\($0)\\\"\"" } }
            if request.method != "PATCH" {
                // As recorded (create-422-invalid.http): wrong types are refused with a cause each.
                let violations = schemaViolations(object, schema: schema)
                if !violations.isEmpty {
                    let name = (object["metadata"] as? [String: Any])?["name"] as? String ?? target.name ?? ""
                    return invalid(target.kind, name, violations, kindInMessage: true)
                }
            }
            request.body = Array((try? JSONSerialization.data(withJSONObject: object)) ?? Data())
        }
        var response = routeValidated(request, target)
        for warning in warnings { response.headers.add("warning", warning) }
        return response
    }

    private func routeValidated(_ request: HTTPRequest, _ target: Target) -> HTTPResponse {
        switch (request.method, target.name, target.subresource) {
        case ("GET", nil, nil):
            return request.isWatch ? watch(target, request) : list(target, request)
        case ("GET", let name?, nil): return get(target, name)
        case ("POST", nil, nil): return create(target, request.body, manager: request.fieldManager)
        case ("PUT", let name?, let sub): return update(target, name, sub, request.body, patch: nil, manager: request.fieldManager)
        case ("PATCH", let name?, let sub):
            switch (request.headers["content-type"], target.kind.group.hasSuffix(".k8s.io") || target.kind.group.isEmpty) {
            case ("application/merge-patch+json", _):
                return update(target, name, sub, request.body, patch: .merge, manager: request.fieldManager)
            case ("application/strategic-merge-patch+json", true):
                return update(target, name, sub, request.body, patch: .strategicMerge, manager: request.fieldManager)
            default:
                // Custom resources take no strategic merge patch, as on the real server.
                return status(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml")
            }
        case ("DELETE", let name?, nil): return delete(target, name, request.body)
        default: return status(405, "MethodNotAllowed", "\(request.method) is not supported on \(request.path)")
        }
    }

    private func get(_ target: Target, _ name: String) -> HTTPResponse {
        guard let object = locked({ objects[key(target.kind, target.namespace, name)] }) else {
            return notFound(target.kind, name)
        }
        return json(200, object)
    }

    private func list(_ target: Target, _ request: HTTPRequest) -> HTTPResponse {
        // A resourceVersion alone means "not older than": served from the watch cache
        // whatever was compacted (list-compacted-rv-notolderthan-200.http); only an Exact
        // match of a compacted version is 410 (list-410-exact.http).
        if request.queryValue("resourceVersionMatch") == "Exact", let exact = request.queryValue("resourceVersion").flatMap(Int.init),
           exact < locked({ compactedBelow }) {
            return status(410, "Expired", "The resourceVersion for the provided list is too old.")
        }
        let selector = Selector(request)
        let listPrefix = prefix(target.kind, target.namespace)
        let (entries, version) = locked { () -> ([(key: String, value: [String: Any])], Int) in
            let matching = objects.filter { $0.key.hasPrefix(listPrefix) && selector.matches($0.value) }.sorted { $0.key < $1.key }
            return (matching.map { (String($0.key.dropFirst(listPrefix.count)), $0.value) }, resourceVersion)
        }
        let start = request.queryValue("continue").flatMap { ContinueToken(encoded: $0.removingPercentEncoding ?? $0) }
        let remaining = start.map { token in entries.filter { $0.key >= token.start } } ?? entries
        let limit = request.queryValue("limit").flatMap(Int.init).flatMap { $0 > 0 ? $0 : nil } ?? remaining.count
        let page = Array(remaining.prefix(limit))
        var metadata: [String: Any] = ["resourceVersion": String(start?.resourceVersion ?? version)]
        if page.count < remaining.count, let last = page.last {
            // The real token's form (list-pkis-limit1.http), so a recorded one can be sent back.
            metadata["continue"] = ContinueToken(resourceVersion: start?.resourceVersion ?? version, start: last.key + "\u{0}").encoded
            metadata["remainingItemCount"] = remaining.count - page.count
        } else if target.kind.isCustomResource {
            // As recorded (list-pkis.http): a custom resource's last page says "continue":"";
            // built-in kinds leave the key out (list-secrets-metadata-only-200.http).
            metadata["continue"] = ""
        }
        if request.asksForTable, target.kind.isCustomResource {
            return json(200, pkiColumns.table(page.map(\.value), resourceVersion: String(start?.resourceVersion ?? version)))
        }
        if request.asksForMetadataOnly {
            // As recorded (list-secrets-metadata-only-200.http): names, owners and versions, no data.
            return json(200, ["kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": metadata,
                              "items": page.map { partialObjectMetadata($0.value) }])
        }
        var items = page.map(\.value)
        if !target.kind.isCustomResource {
            // Items of built-in lists carry no apiVersion and kind (events-list-fieldselector.http).
            items = items.map { item in item.filter { $0.key != "apiVersion" && $0.key != "kind" } }
        }
        return json(200, ["kind": target.kind.kind + "List", "apiVersion": target.kind.apiVersion, "metadata": metadata, "items": items])
    }

    /// An object as PartialObjectMetadata: its metadata and nothing else.
    private func partialObjectMetadata(_ object: [String: Any]) -> [String: Any] {
        ["kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": object["metadata"] ?? [String: Any]()]
    }

    /// A watch as the 1.28 watch cache serves it: stored events after the resourceVersion
    /// replayed in 2048-byte chunks that cut events anywhere
    /// (watch-compacted-rv-still-in-watch-cache.raw), live events one per chunk
    /// (watch-pkis.raw), and a BOOKMARK only to a watch that saw a live event: a minute
    /// after it began, or two seconds before its timeoutSeconds (watch-pkis-timeout.raw).
    /// From a compacted resourceVersion: 200 with one ERROR event (watch-410.raw).
    private func watch(_ target: Target, _ request: HTTPRequest) -> HTTPResponse {
        let stream = ResponseStream()
        let selector = Selector(request)
        let since = request.queryValue("resourceVersion").flatMap(Int.init) ?? 0
        let metadataOnly = request.asksForMetadataOnly
        let timeout = request.queryValue("timeoutSeconds").flatMap(Double.init)
        let watcher = Watcher(kind: target.kind, namespace: target.namespace, selector: selector, stream: stream,
                              metadataOnly: metadataOnly, bookmarks: request.queryValue("allowWatchBookmarks") == "true")
        let replay = locked { () -> [[String: Any]]? in
            if since > 0 && since < compactedBelow { return nil }
            let events: [[String: Any]]
            if since == 0 {
                // No resourceVersion: the current state as ADDED events, as the real server does.
                events = objects.filter { $0.key.hasPrefix(prefix(target.kind, target.namespace)) && selector.matches($0.value) }
                    .sorted { $0.key < $1.key }.map { ["type": "ADDED", "object": $0.value] as [String: Any] }
            } else {
                events = history.filter { $0.version > since && $0.key.hasPrefix(prefix(target.kind, target.namespace)) }
                    .compactMap { entry in
                        selector.eventType(entry.type, entry.object, previous: entry.previous).map { ["type": $0, "object": entry.object] as [String: Any] }
                    }
            }
            watchers.append(watcher)
            return events
        }
        guard let replay else {
            let oldest = locked { compactedBelow } - 1
            stream.write(line(["type": "ERROR", "object": statusObject(410, "Expired", "too old resource version: \(since) (\(oldest))")]))
            stream.finish()
            return HTTPResponse(status: 200, headers: ["content-type": "application/json"], stream: stream)
        }
        var replayed: [UInt8] = []
        for var event in replay {
            if metadataOnly, let object = event["object"] as? [String: Any] { event["object"] = partialObjectMetadata(object) }
            replayed += line(event)
        }
        for start in stride(from: 0, to: replayed.count, by: 2048) {
            stream.write(Array(replayed[start..<min(start + 2048, replayed.count)]))
        }
        if watcher.bookmarks {
            scheduleBookmark(for: stream, kind: target.kind, after: min(bookmarkInterval, timeout.map { max(0, $0 - 2) } ?? bookmarkInterval))
        }
        if let timeout {
            DispatchQueue.global().asyncAfter(deadline: .now() + timeout) { [weak self] in
                self?.locked { self?.watchers.removeAll { $0.stream === stream } }
                stream.finish()
            }
        }
        return HTTPResponse(status: 200, headers: ["content-type": "application/json"], stream: stream)
    }

    /// Sends now the BOOKMARKs the watch cache's timer would send next: to every watch that
    /// asked for them and saw a live event since its last one.
    public func sendBookmarks() {
        locked {
            for index in watchers.indices where watchers[index].bookmarks && watchers[index].changedSinceBookmark {
                watchers[index].changedSinceBookmark = false
                watchers[index].stream.write(line(["type": "BOOKMARK", "object": ["kind": watchers[index].kind.kind,
                                                                                  "apiVersion": watchers[index].kind.apiVersion,
                                                                                  "metadata": ["resourceVersion": String(resourceVersion)]]]))
            }
        }
    }

    /// Sends a BOOKMARK to the watch on `stream` after `delay` if it saw a live event since
    /// it began or since its last one, and again every bookmarkInterval while it is open.
    private func scheduleBookmark(for stream: ResponseStream, kind: ResourceKind, after delay: Double) {
        DispatchQueue.global().asyncAfter(deadline: .now() + delay) { [weak self] in
            guard let self else { return }
            let open = self.locked { () -> Bool in
                guard let index = self.watchers.firstIndex(where: { $0.stream === stream }) else { return false }
                if self.watchers[index].changedSinceBookmark {
                    self.watchers[index].changedSinceBookmark = false
                    stream.write(self.line(["type": "BOOKMARK", "object": ["kind": kind.kind, "apiVersion": kind.apiVersion,
                                                                         "metadata": ["resourceVersion": String(self.resourceVersion)]]]))
                }
                return true
            }
            if open { self.scheduleBookmark(for: stream, kind: kind, after: self.bookmarkInterval) }
        }
    }

    private func create(_ target: Target, _ body: [UInt8], manager: String) -> HTTPResponse {
        guard var object = parse(body) else { return status(400, "BadRequest", "the body is not a JSON object") }
        var metadata = object["metadata"] as? [String: Any] ?? [:]
        guard let name = (metadata["name"] as? String) ?? (metadata["generateName"] as? String).map({ $0 + randomSuffix() }) else {
            return invalid(target.kind, "", [SchemaViolation(field: "metadata.name", reason: "FieldValueRequired",
                                                             message: "Required value: name or generateName is required")])
        }
        let written = object
        return locked { () -> HTTPResponse in
            let objectKey = key(target.kind, target.namespace, name)
            if objects[objectKey] != nil {
                return status(409, "AlreadyExists", "\(target.kind.qualified) \"\(name)\" already exists",
                              details: ["name": name, "group": target.kind.group, "kind": target.kind.plural])
            }
            resourceVersion += 1
            let now = timestamp()
            metadata["name"] = name
            if target.kind.namespaced { metadata["namespace"] = target.namespace }
            metadata["uid"] = UUID().uuidString.lowercased()
            metadata["resourceVersion"] = String(resourceVersion)
            metadata["creationTimestamp"] = now
            metadata["managedFields"] = ManagedFields(kind: target.kind)
                .entries(old: nil, written: written, existing: [], manager: manager, subresource: nil, time: now)
            if target.kind.hasStatus {
                metadata["generation"] = 1
                object["status"] = nil
            }
            object["metadata"] = metadata
            object["apiVersion"] = target.kind.apiVersion
            object["kind"] = target.kind.kind
            applyDefaults(&object, target.kind)
            objects[objectKey] = object
            record("ADDED", objectKey, object)
            var response = json(201, object)
            for warning in objectWarnings(object) { response.headers.add("warning", warning) }
            return response
        }
    }

    /// Fields the API server fills in on built-in kinds (event-create-201.http).
    private func applyDefaults(_ object: inout [String: Any], _ kind: ResourceKind) {
        if kind.kind == "Event" {
            object["eventTime"] = object["eventTime"] ?? NSNull()
            object["reportingComponent"] = object["reportingComponent"] ?? ""
            object["reportingInstance"] = object["reportingInstance"] ?? ""
        }
    }

    /// Warnings the API server gives about an object it accepted: a `kubernetes.io/tls`
    /// Secret whose certificate or key is not PEM (secret-tls-placeholder-key-warning-201.http),
    /// checked in the order Go's tls.X509KeyPair reads them.
    private func objectWarnings(_ object: [String: Any]) -> [String] {
        guard object["kind"] as? String == "Secret", object["type"] as? String == "kubernetes.io/tls" else { return [] }
        let data = object["data"] as? [String: String] ?? [:]
        func blocks(_ key: String) -> [String] {
            data[key].flatMap { Data(base64Encoded: $0) }.map { pemBlockTypes(String(decoding: $0, as: UTF8.self)) } ?? []
        }
        if !blocks("tls.crt").contains("CERTIFICATE") { return ["299 - \"tls: failed to find any PEM data in certificate input\""] }
        if !blocks("tls.key").contains(where: { $0 == "PRIVATE KEY" || $0.hasSuffix(" PRIVATE KEY") }) {
            return ["299 - \"tls: failed to find any PEM data in key input\""]
        }
        return []
    }

    enum PatchType { case merge, strategicMerge }

    /// PUT (`patch` nil) or PATCH of `name`.
    private func update(_ target: Target, _ name: String, _ subresource: String?, _ body: [UInt8], patch: PatchType?,
                        manager: String) -> HTTPResponse {
        guard subresource == nil || (subresource == "status" && target.kind.hasStatus) else {
            return status(404, "NotFound", "the server could not find the requested resource")
        }
        guard let incoming = parse(body) else { return status(400, "BadRequest", "the body is not a JSON object") }
        return locked { () -> HTTPResponse in
            let objectKey = key(target.kind, target.namespace, name)
            guard let stored = objects[objectKey] else { return notFound(target.kind, name) }
            var storedMetadata = stored["metadata"] as? [String: Any] ?? [:]
            var next: [String: Any]
            let version = (incoming["metadata"] as? [String: Any])?["resourceVersion"] as? String
            if patch == nil && version == nil {
                // As recorded (update-422-no-rv.http), Go's %#v of an empty string and all.
                return invalid(target.kind, name, [SchemaViolation(field: "metadata.resourceVersion", reason: "FieldValueInvalid",
                                                                   message: "Invalid value: 0x0: must be specified for an update")])
            }
            // An update, or a patch that names a resourceVersion, applies only to that version.
            if let version, version != storedMetadata["resourceVersion"] as? String {
                return status(409, "Conflict", "Operation cannot be fulfilled on \(target.kind.qualified) \"\(name)\": the object has been modified; please apply your changes to the latest version and try again",
                              details: ["name": name, "group": target.kind.group, "kind": target.kind.plural])
            }
            switch patch {
            case nil: next = incoming
            case .merge?: next = mergePatch(stored, incoming)
            case .strategicMerge?: next = strategicMergePatch(stored, incoming)
            }
            if target.kind.hasStatus {
                if subresource == "status" {
                    // Only status changes through /status.
                    var kept = stored
                    kept["status"] = next["status"]
                    next = kept
                } else {
                    next["status"] = stored["status"]
                    if !jsonEqual(stored["spec"], next["spec"]) {
                        storedMetadata["generation"] = (storedMetadata["generation"] as? Int ?? 0) + 1
                    }
                }
            }
            // Server-owned metadata stays the server's; labels, annotations and owners follow the client.
            var metadata = next["metadata"] as? [String: Any] ?? [:]
            for field in ["name", "namespace", "uid", "creationTimestamp", "generation", "deletionTimestamp", "deletionGracePeriodSeconds"] {
                metadata[field] = storedMetadata[field]
            }
            let now = timestamp()
            metadata["managedFields"] = ManagedFields(kind: target.kind)
                .entries(old: stored, written: next, existing: storedMetadata["managedFields"] as? [[String: Any]] ?? [],
                         manager: manager, subresource: subresource, time: now)
            if (metadata["managedFields"] as? [Any])?.isEmpty == true { metadata["managedFields"] = nil }
            applyDefaults(&next, target.kind)
            resourceVersion += 1
            metadata["resourceVersion"] = String(resourceVersion)
            next["metadata"] = metadata
            next["apiVersion"] = target.kind.apiVersion
            next["kind"] = target.kind.kind
            objects[objectKey] = next
            record("MODIFIED", objectKey, next, previous: stored)
            var response = json(200, next)
            for warning in objectWarnings(next) { response.headers.add("warning", warning) }
            return response
        }
    }

    /// Deletes at once, or with DeleteOptions `propagationPolicy: Foreground` as recorded
    /// (pki-delete-foreground-200.http): the object stays, with deletionTimestamp and the
    /// foregroundDeletion finalizer, until its dependents are gone. No garbage collector
    /// runs here, so it stays until the test removes it.
    private func delete(_ target: Target, _ name: String, _ body: [UInt8]) -> HTTPResponse {
        let options = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any]
        let foreground = options?["propagationPolicy"] as? String == "Foreground"
        return locked { () -> HTTPResponse in
            let objectKey = key(target.kind, target.namespace, name)
            if foreground, var stored = objects[objectKey] {
                var metadata = stored["metadata"] as? [String: Any] ?? [:]
                if metadata["deletionTimestamp"] == nil {
                    resourceVersion += 1
                    metadata["deletionTimestamp"] = timestamp()
                    metadata["deletionGracePeriodSeconds"] = 0
                    metadata["finalizers"] = (metadata["finalizers"] as? [String] ?? []) + ["foregroundDeletion"]
                    metadata["resourceVersion"] = String(resourceVersion)
                    stored["metadata"] = metadata
                    let previous = objects[objectKey]
                    objects[objectKey] = stored
                    record("MODIFIED", objectKey, stored, previous: previous)
                }
                return json(200, stored)
            }
            guard var stored = objects.removeValue(forKey: objectKey) else { return notFound(target.kind, name) }
            resourceVersion += 1
            var metadata = stored["metadata"] as? [String: Any] ?? [:]
            metadata["resourceVersion"] = String(resourceVersion)
            stored["metadata"] = metadata
            record("DELETED", objectKey, stored)
            return json(200, ["kind": "Status", "apiVersion": "v1", "metadata": [:] as [String: Any], "status": "Success",
                              "details": ["name": name, "group": target.kind.group, "kind": target.kind.plural, "uid": metadata["uid"] ?? ""]])
        }
    }

    /// Appends to history and tells matching watchers. Called with the lock held. As the
    /// watch cache does, a watch with a selector sees an object that stops matching as
    /// DELETED and one that starts matching as ADDED.
    private func record(_ type: String, _ objectKey: String, _ object: [String: Any], previous: [String: Any]? = nil) {
        history.append((resourceVersion, type, objectKey, object, previous))
        for index in watchers.indices where objectKey.hasPrefix(prefix(watchers[index].kind, watchers[index].namespace)) {
            guard let seen = watchers[index].selector.eventType(type, object, previous: previous) else { continue }
            let watcher = watchers[index]
            watcher.stream.write(line(["type": seen, "object": watcher.metadataOnly ? partialObjectMetadata(object) : object]))
            watchers[index].changedSinceBookmark = true
        }
        watchers.removeAll { $0.stream.isCancelled }
    }

    // MARK: Wire helpers

    private func status(_ code: Int, _ reason: String, _ message: String, details: [String: Any]? = nil, retryAfter: Int? = nil) -> HTTPResponse {
        var object = statusObject(code, reason, message)
        if var details {
            if let retryAfter { details["retryAfterSeconds"] = retryAfter }
            object["details"] = details
        } else if let retryAfter {
            object["details"] = ["retryAfterSeconds": retryAfter]
        }
        return json(code, object)
    }

    private func statusObject(_ code: Int, _ reason: String, _ message: String) -> [String: Any] {
        ["kind": "Status", "apiVersion": "v1", "metadata": [:] as [String: Any], "status": "Failure", "message": message, "reason": reason, "code": code]
    }

    private func notFound(_ kind: ResourceKind, _ name: String) -> HTTPResponse {
        status(404, "NotFound", "\(kind.qualified) \"\(name)\" not found", details: ["name": name, "group": kind.group, "kind": kind.plural])
    }

    /// 422 Invalid. Schema validation names the Kind ("Pki.certgate.dev ... is invalid",
    /// details.kind "Pki": create-422-invalid.http); other checks name the resource
    /// ("pkis.certgate.dev", "pkis": update-422-no-rv.http).
    private func invalid(_ kind: ResourceKind, _ name: String, _ violations: [SchemaViolation], kindInMessage: Bool = false) -> HTTPResponse {
        let errors = violations.map { "\($0.field): \($0.message)" }
        let subject = kindInMessage ? (kind.group.isEmpty ? kind.kind : "\(kind.kind).\(kind.group)") : kind.qualified
        return status(422, "Invalid", "\(subject) \"\(name)\" is invalid: " + (errors.count == 1 ? errors[0] : "[\(errors.joined(separator: ", "))]"),
                      details: ["name": name, "group": kind.group, "kind": kindInMessage ? kind.kind : kind.plural,
                                "causes": violations.map { ["reason": $0.reason, "message": $0.message, "field": $0.field] }])
    }

    /// 403 as RBAC words it (forbidden-403-serviceaccount.http, no-token-403-anonymous.http).
    private func forbidden(_ request: HTTPRequest, user: String) -> HTTPResponse {
        guard let target = Target(path: request.path) else {
            return status(403, "Forbidden", "forbidden: User \"\(user)\" cannot get path \"\(request.path)\"")
        }
        let verb: String
        switch (request.method, target.name) {
        case ("GET", nil): verb = request.isWatch ? "watch" : "list"
        case ("GET", _): verb = "get"
        case ("POST", _): verb = "create"
        case ("PUT", _): verb = "update"
        case ("PATCH", _): verb = "patch"
        case ("DELETE", _): verb = "delete"
        default: verb = request.method.lowercased()
        }
        let resource = target.kind.plural + (target.subresource.map { "/\($0)" } ?? "")
        let subject = target.name.map { "\(target.kind.qualified) \"\($0)\"" } ?? target.kind.qualified
        let scope = target.namespace.map { " in the namespace \"\($0)\"" } ?? ""
        var details: [String: Any] = ["group": target.kind.group, "kind": target.kind.plural]
        details["name"] = target.name
        var response = status(403, "Forbidden", "\(subject) is forbidden: User \"\(user)\" cannot \(verb) resource \"\(resource)\" "
                                + "in API group \"\(target.kind.group)\"\(scope)", details: details)
        response.headers.add("x-content-type-options", "nosniff")
        return response
    }

    /// Compact JSON ending in a newline, as the API server writes it; `pretty` for /version.
    private func json(_ code: Int, _ object: [String: Any], pretty: Bool = false) -> HTTPResponse {
        let options: JSONSerialization.WritingOptions = pretty ? [.prettyPrinted, .withoutEscapingSlashes] : [.withoutEscapingSlashes]
        let body = Array((try? JSONSerialization.data(withJSONObject: object, options: options)) ?? Data())
        return .json(code, pretty ? body : body + [0x0A])
    }

    private func line(_ object: [String: Any]) -> [UInt8] {
        Array((try? JSONSerialization.data(withJSONObject: object, options: [.withoutEscapingSlashes])) ?? Data()) + [0x0A]
    }

    private func parse(_ body: [UInt8]) -> [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any]
    }

    private func locked<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }
}

extension TestAPIServer {
    /// /version, as v1.28.7 answered it (version-200.http).
    var versionInfo: [String: Any] {
        ["major": "1", "minor": "28", "gitVersion": "v1.28.7", "gitCommit": "0000000000000000000000000000000000000000",
         "gitTreeState": "archive", "buildDate": "2026-11-21T17:26:32Z", "goVersion": "go1.21.13", "compiler": "gc",
         "platform": "linux/amd64"]
    }

    /// The APIResourceList of /api/v1 or /apis/GROUP/VERSION (discovery-certgate-v1.http).
    func discovery(_ path: String) -> [String: Any]? {
        // The legacy discovery documents kubectl reads first (it falls back to them from the
        // aggregated form when the answer is plain JSON).
        if path == "/api" {
            return ["kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [["clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:\(port)"]]]
        }
        if path == "/apis" {
            var groups: [String: [String]] = [:]
            for kind in ResourceKind.all where !kind.group.isEmpty {
                let version = String(kind.apiVersion.split(separator: "/").last ?? "")
                if !(groups[kind.group]?.contains(version) ?? false) { groups[kind.group, default: []].append(version) }
            }
            return ["kind": "APIGroupList", "apiVersion": "v1", "groups": groups.keys.sorted().map { group -> [String: Any] in
                let versions = groups[group]!.map { ["groupVersion": "\(group)/\($0)", "version": $0] }
                return ["name": group, "versions": versions, "preferredVersion": versions[0]]
            }]
        }
        let groupVersion = path == "/api/v1" ? "v1" : path.hasPrefix("/apis/") ? String(path.dropFirst("/apis/".count)) : ""
        let kinds = ResourceKind.all.filter { $0.apiVersion == groupVersion }
        guard !kinds.isEmpty, groupVersion.split(separator: "/").count == (groupVersion == "v1" ? 1 : 2) else { return nil }
        let verbs = ["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"]
        let resources = kinds.flatMap { kind -> [[String: Any]] in
            var resource: [String: Any] = ["name": kind.plural, "singularName": kind.kind.lowercased(), "namespaced": kind.namespaced,
                                           "kind": kind.kind, "verbs": verbs]
            if kind.isCustomResource { resource["storageVersionHash"] = "X4EwoPJrDMU=" }
            guard kind.hasStatus else { return [resource] }
            return [resource, ["name": "\(kind.plural)/status", "singularName": "", "namespaced": kind.namespaced, "kind": kind.kind,
                               "verbs": ["get", "patch", "update"]]]
        }
        return ["kind": "APIResourceList", "apiVersion": "v1", "groupVersion": groupVersion, "resources": resources]
    }
}

/// A list's continue token as kube-apiserver writes it: base64url (unpadded) of
/// {"v":"meta.k8s.io/v1","rv":N,"start":"<next key>"}.
struct ContinueToken {
    let resourceVersion: Int
    /// The key (namespace-relative name) the next page starts at.
    let start: String

    init(resourceVersion: Int, start: String) {
        self.resourceVersion = resourceVersion
        self.start = start
    }

    init?(encoded: String) {
        var base64 = encoded.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        guard let data = Data(base64Encoded: base64), let fields = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
              fields["v"] as? String == "meta.k8s.io/v1", let version = fields["rv"] as? Int, let start = fields["start"] as? String else {
            return nil
        }
        resourceVersion = version
        self.start = start
    }

    var encoded: String {
        let fields: [String: Any] = ["v": "meta.k8s.io/v1", "rv": resourceVersion, "start": start]
        let data = (try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}

/// What the server knows of each resource it serves.
struct ResourceKind: Equatable {
    let group: String
    let version: String
    let plural: String
    let kind: String
    let namespaced: Bool
    /// Has a status subresource and a generation (the CRD of pkis).
    let hasStatus: Bool

    var apiVersion: String { group.isEmpty ? version : "\(group)/\(version)" }
    /// Served from a CustomResourceDefinition, whose lists the API server writes as
    /// unstructured JSON (empty list metadata fields kept).
    var isCustomResource: Bool { group == "certgate.dev" }
    /// How the API server names it in messages: "pkis.certgate.dev", "secrets".
    var qualified: String { group.isEmpty ? plural : "\(plural).\(group)" }

    static let all: [ResourceKind] = [
        ResourceKind(group: "certgate.dev", version: "v1", plural: "pkis", kind: "Pki", namespaced: true, hasStatus: true),
        ResourceKind(group: "", version: "v1", plural: "secrets", kind: "Secret", namespaced: true, hasStatus: false),
        ResourceKind(group: "", version: "v1", plural: "events", kind: "Event", namespaced: true, hasStatus: false),
        ResourceKind(group: "", version: "v1", plural: "configmaps", kind: "ConfigMap", namespaced: true, hasStatus: false),
        ResourceKind(group: "", version: "v1", plural: "pods", kind: "Pod", namespaced: true, hasStatus: false),
        ResourceKind(group: "coordination.k8s.io", version: "v1", plural: "leases", kind: "Lease", namespaced: true, hasStatus: false),
        ResourceKind(group: "admissionregistration.k8s.io", version: "v1", plural: "validatingwebhookconfigurations",
                     kind: "ValidatingWebhookConfiguration", namespaced: false, hasStatus: false),
    ]

    init(group: String, version: String, plural: String, kind: String, namespaced: Bool, hasStatus: Bool) {
        self.group = group
        self.version = version
        self.plural = plural
        self.kind = kind
        self.namespaced = namespaced
        self.hasStatus = hasStatus
    }

    init(_ resource: Resource) {
        self = ResourceKind.all.first { $0.group == resource.group && $0.plural == resource.plural }!
    }
}

/// A request path taken apart: /apis/GROUP/VERSION[/namespaces/NS]/PLURAL[/NAME[/SUB]].
struct Target {
    let kind: ResourceKind
    let namespace: String?
    let name: String?
    let subresource: String?

    init?(path: String) {
        var parts = path.split(separator: "/").map { String($0).removingPercentEncoding ?? String($0) }
        let group: String
        if parts.first == "api", parts.count >= 2 {
            group = ""
            parts.removeFirst(2)
        } else if parts.first == "apis", parts.count >= 3 {
            group = parts[1]
            parts.removeFirst(3)
        } else {
            return nil
        }
        var namespace: String?
        if parts.first == "namespaces", parts.count >= 3 {
            namespace = parts[1]
            parts.removeFirst(2)
        }
        guard let plural = parts.first, let kind = ResourceKind.all.first(where: { $0.group == group && $0.plural == plural }) else { return nil }
        self.kind = kind
        self.namespace = kind.namespaced ? namespace : nil
        name = parts.count > 1 ? parts[1] : nil
        subresource = parts.count > 2 ? parts[2] : nil
    }
}

/// labelSelector (k=v, k==v, k!=v, k, !k) and fieldSelector (metadata.name, metadata.namespace,
/// involvedObject.*), comma-separated terms all of which must hold.
struct Selector {
    private var labelTerms: [(key: String, value: String?, equal: Bool)] = []
    private var fieldTerms: [(path: [String], value: String, equal: Bool)] = []

    init(_ request: HTTPRequest) {
        for term in (request.queryValue("labelSelector")?.removingPercentEncoding ?? "").split(separator: ",").map(String.init) where !term.isEmpty {
            if let range = term.range(of: "!=") {
                labelTerms.append((String(term[..<range.lowerBound]), String(term[range.upperBound...]), false))
            } else if let range = term.range(of: "=") {
                labelTerms.append((String(term[..<range.lowerBound]), String(term[range.upperBound...]).replacingOccurrences(of: "=", with: ""), true))
            } else if term.hasPrefix("!") {
                labelTerms.append((String(term.dropFirst()), nil, false))
            } else {
                labelTerms.append((term, nil, true))
            }
        }
        for term in (request.queryValue("fieldSelector")?.removingPercentEncoding ?? "").split(separator: ",").map(String.init) where !term.isEmpty {
            let equal = !term.contains("!=")
            let pieces = term.components(separatedBy: equal ? "=" : "!=").filter { !$0.isEmpty }
            guard pieces.count == 2 else { continue }
            fieldTerms.append((pieces[0].split(separator: ".").map(String.init), pieces[1], equal))
        }
    }

    /// The event a watch with this selector sees for a change (nil: none).
    func eventType(_ type: String, _ object: [String: Any], previous: [String: Any]?) -> String? {
        let now = matches(object)
        guard type == "MODIFIED", let previous else { return now ? type : nil }
        switch (matches(previous), now) {
        case (true, true): return "MODIFIED"
        case (false, true): return "ADDED"
        case (true, false): return "DELETED"
        case (false, false): return nil
        }
    }

    func matches(_ object: [String: Any]) -> Bool {
        let labels = (object["metadata"] as? [String: Any])?["labels"] as? [String: String] ?? [:]
        for term in labelTerms {
            let actual = labels[term.key]
            let holds = term.value.map { actual == $0 } ?? (actual != nil)
            if holds != term.equal { return false }
        }
        for term in fieldTerms {
            var current: Any? = object
            for step in term.path { current = (current as? [String: Any])?[step] }
            if ((current as? String) == term.value) != term.equal { return false }
        }
        return true
    }
}

private func key(_ kind: ResourceKind, _ namespace: String?, _ name: String) -> String {
    prefix(kind, namespace) + name
}

/// Keys of one resource (in one namespace, or all when nil) start with this.
private func prefix(_ kind: ResourceKind, _ namespace: String?) -> String {
    kind.namespaced ? "\(kind.plural)/\(namespace.map { $0 + "/" } ?? "")" : "\(kind.plural)//"
}

/// RFC 7386: objects merge, null deletes, anything else replaces.
func mergePatch(_ target: [String: Any], _ patch: [String: Any]) -> [String: Any] {
    strategicMergePatch(target, patch, listMergeKeys: [:])
}

/// The strategic merge patch of built-in kinds, for the lists Certgate patches: like a merge
/// patch, except that lists whose Go type declares a merge key merge item by item on it.
func strategicMergePatch(_ target: [String: Any], _ patch: [String: Any],
                         listMergeKeys: [String: String] = ["webhooks": "name", "containers": "name", "volumes": "name",
                                                            "env": "name", "ownerReferences": "uid"]) -> [String: Any] {
    var result = target
    for (key, value) in patch {
        if value is NSNull {
            result[key] = nil
        } else if let patchObject = value as? [String: Any] {
            result[key] = strategicMergePatch(result[key] as? [String: Any] ?? [:], patchObject, listMergeKeys: listMergeKeys)
        } else if let mergeKey = listMergeKeys[key], let patchItems = value as? [[String: Any]] {
            var items = result[key] as? [[String: Any]] ?? []
            for patchItem in patchItems {
                if let index = items.firstIndex(where: { jsonEqual($0[mergeKey], patchItem[mergeKey]) }) {
                    items[index] = strategicMergePatch(items[index], patchItem, listMergeKeys: listMergeKeys)
                } else {
                    items.append(patchItem)
                }
            }
            result[key] = items
        } else {
            result[key] = value
        }
    }
    return result
}

private func jsonEqual(_ a: Any?, _ b: Any?) -> Bool {
    switch (a, b) {
    case (nil, nil): return true
    case (let a?, let b?): return NSDictionary(dictionary: ["v": a]).isEqual(to: ["v": b])
    default: return false
    }
}

private func timestamp() -> String {
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime]
    return formatter.string(from: Date())
}

/// The types of the PEM blocks in `text` that Go's pem.Decode would find: a BEGIN line, a
/// body of valid base64, the matching END line. The DER inside is not parsed.
func pemBlockTypes(_ text: String) -> [String] {
    var types: [String] = []
    var rest = Substring(text)
    while let begin = rest.range(of: "-----BEGIN ") {
        guard let typeEnd = rest[begin.upperBound...].range(of: "-----") else { break }
        let type = String(rest[begin.upperBound..<typeEnd.lowerBound])
        guard let end = rest[typeEnd.upperBound...].range(of: "-----END \(type)-----") else { break }
        let body = rest[typeEnd.upperBound..<end.lowerBound].filter { !$0.isWhitespace }
        if Data(base64Encoded: String(body)) != nil { types.append(type) }
        rest = rest[end.upperBound...]
    }
    return types
}

private func randomSuffix() -> String {
    String((0..<5).map { _ in "bcdfghjklmnpqrstvwxz2456789".randomElement()! })
}

extension HTTPRequest {
    /// watch=true (client-go) or watch=1 (curl in the recordings): the server takes both.
    var isWatch: Bool { ["true", "1"].contains(queryValue("watch") ?? "") }

    /// Who managedFields name for this write: the fieldManager parameter (kubectl sends
    /// one), else the User-Agent up to its first "/", as the API server takes it.
    var fieldManager: String {
        if let manager = queryValue("fieldManager"), !manager.isEmpty { return manager.removingPercentEncoding ?? manager }
        let agent = headers["user-agent"] ?? ""
        return agent.isEmpty ? "unknown" : String(agent.prefix { $0 != "/" })
    }

    /// Whether the first type the Accept header names is metadata only (the API server
    /// uses the first it can serve), as client-go's metadata informers ask.
    var asksForMetadataOnly: Bool {
        let first = (headers["accept"] ?? "").split(separator: ",").first ?? ""
        return first.contains("as=PartialObjectMetadata")
    }
}

