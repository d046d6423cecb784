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
/// What it does as kube-apiserver 1.28 does: a cluster-wide resourceVersion counter; uid,
/// creationTimestamp and (for pkis) generation set on create; 409 AlreadyExists on create,
/// 409 Conflict on a stale update, 422 on an update without resourceVersion, 404 on a
/// missing object; generation bumped on spec changes only; the status subresource of pkis
/// (status ignored on the main resource, only status taken on /status); merge patch, and
/// strategic merge patch of built-in kinds (415 for pkis), both conditional on a
/// resourceVersion in the patch;
/// delete answered with Status Success; label (equality) and field selectors
/// (metadata.name/namespace, involvedObject.*); limit and continue; bearer-token
/// authentication (401); watches from a resourceVersion with history replay, live events,
/// a BOOKMARK after the replay, and 410 Expired (an ERROR event) before the compaction point.
/// Faults on demand: ``failNext(_:status:retryAfter:)``, ``stallNext(seconds:)``,
/// ``dropWatches()``, ``compact()``.
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
    private var history: [(version: Int, type: String, key: String, object: [String: Any])] = []
    private var resourceVersion = 100
    private var compactedBelow = 0
    private var watchers: [Watcher] = []
    private var failures: [(status: Int, retryAfter: Int?)] = []
    private var stalls: [Double] = []
    /// Requests served, for tests to inspect ("GET /api/v1/namespaces/app1/secrets/x").
    public private(set) var requests: [String] = []

    struct Watcher {
        let kind: ResourceKind
        let namespace: String?
        let selector: Selector
        let stream: ResponseStream
        /// Asked for PartialObjectMetadata: objects go out as their metadata only.
        let metadataOnly: Bool
    }

    public init(token: String = "test-token") throws {
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
    public func writeKubeconfig(to path: String) throws {
        let ca = try Data(contentsOf: URL(fileURLWithPath: pki.caFile)).base64EncodedString()
        try """
            apiVersion: v1
            kind: Config
            current-context: test
            clusters: [{name: test, cluster: {server: "https://127.0.0.1:\(port)", certificate-authority-data: \(ca)}}]
            contexts: [{name: test, context: {cluster: test, user: test}}]
            users: [{name: test, user: {token: \(token)}}]
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
        locked { failures += Array(repeating: (status, retryAfter), count: count) }
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

    /// Forgets history: lists and watches from an older resourceVersion get 410 Expired.
    public func compact() {
        locked { compactedBelow = resourceVersion + 1 }
    }

    /// The stored object, as JSON.
    public func object(_ resource: Resource, namespace: String?, name: String) -> [String: Any]? {
        locked { objects[key(ResourceKind(resource), namespace, name)] }
    }

    public var currentResourceVersion: Int { locked { resourceVersion } }

    // MARK: Requests

    private func handle(_ request: HTTPRequest) -> HTTPResponse {
        locked { requests.append("\(request.method) \(request.path)") }
        guard request.headers["authorization"] == "Bearer \(token)" else {
            return status(401, "Unauthorized", "Unauthorized")
        }
        if let failure = locked({ failures.isEmpty ? nil : failures.removeFirst() }) {
            var response = status(failure.status, failure.status == 429 ? "TooManyRequests" : "InternalError",
                                  "injected failure", retryAfter: failure.retryAfter)
            if let retryAfter = failure.retryAfter { response.headers.add("retry-after", String(retryAfter)) }
            return response
        }
        if let delay = locked({ stalls.isEmpty ? nil : stalls.removeFirst() }) {
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
        guard let target = Target(path: request.path) else {
            return status(404, "NotFound", "the server could not find the requested resource")
        }
        var request = request
        var warnings: [String] = []
        if ["POST", "PUT", "PATCH"].contains(request.method), target.kind.isCustomResource, target.subresource == nil,
           var object = parse(request.body), let schema = TestAPIServer.pkiSchema {
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
            request.body = Array((try? JSONSerialization.data(withJSONObject: object)) ?? Data())
        }
        var response = routeValidated(request, target)
        for warning in warnings { response.headers.add("warning", warning) }
        return response
    }

    private func routeValidated(_ request: HTTPRequest, _ target: Target) -> HTTPResponse {
        switch (request.method, target.name, target.subresource) {
        case ("GET", nil, nil):
            return request.queryValue("watch") == "true" ? watch(target, request) : list(target, request)
        case ("GET", let name?, nil): return get(target, name)
        case ("POST", nil, nil): return create(target, request.body)
        case ("PUT", let name?, let sub): return update(target, name, sub, request.body, patch: nil)
        case ("PATCH", let name?, let sub):
            switch (request.headers["content-type"], target.kind.group.hasSuffix(".k8s.io") || target.kind.group.isEmpty) {
            case ("application/merge-patch+json", _): return update(target, name, sub, request.body, patch: .merge)
            case ("application/strategic-merge-patch+json", true): return update(target, name, sub, request.body, patch: .strategicMerge)
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
        if let since = request.queryValue("resourceVersion").flatMap(Int.init), since > 0, since < locked({ compactedBelow }) {
            return status(410, "Expired", "The resourceVersion for the provided list is too old.")
        }
        let selector = Selector(request)
        let (items, version) = locked { () -> ([[String: Any]], Int) in
            let matching = objects.filter { $0.key.hasPrefix(prefix(target.kind, target.namespace)) && selector.matches($0.value) }
                .sorted { $0.key < $1.key }.map(\.value)
            return (matching, resourceVersion)
        }
        let offset = request.queryValue("continue").flatMap { Int($0) } ?? 0
        let limit = request.queryValue("limit").flatMap(Int.init) ?? items.count
        let page = Array(items.dropFirst(offset).prefix(limit))
        var metadata: [String: Any] = ["resourceVersion": String(version)]
        if offset + page.count < items.count {
            metadata["continue"] = String(offset + page.count)
            metadata["remainingItemCount"] = items.count - offset - page.count
        } else if target.kind.isCustomResource {
            // As recorded (list-pkis.http): a custom resource's last page says "continue":"";
            // built-in kinds leave the key out (list-secrets-metadata-only-200.http).
            metadata["continue"] = ""
        }
        if request.asksForMetadataOnly {
            // As recorded (list-secrets-metadata-only-200.http): names, owners and versions, no data.
            return json(200, ["kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": metadata,
                              "items": page.map(partialObjectMetadata)])
        }
        return json(200, ["kind": target.kind.kind + "List", "apiVersion": target.kind.apiVersion, "metadata": metadata, "items": page])
    }

    /// An object as PartialObjectMetadata: its metadata and nothing else.
    private func partialObjectMetadata(_ object: [String: Any]) -> [String: Any] {
        ["kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": object["metadata"] ?? [String: Any]()]
    }

    private func watch(_ target: Target, _ request: HTTPRequest) -> HTTPResponse {
        let stream = ResponseStream()
        let selector = Selector(request)
        let since = request.queryValue("resourceVersion").flatMap(Int.init) ?? 0
        let bookmarks = request.queryValue("allowWatchBookmarks") == "true"
        let metadataOnly = request.asksForMetadataOnly
        let replay = locked { () -> [[String: Any]]? in
            if since > 0 && since < compactedBelow { return nil }
            let events: [[String: Any]]
            if since == 0 {
                // No resourceVersion: the current state as ADDED events, as the real server does.
                events = objects.filter { $0.key.hasPrefix(prefix(target.kind, target.namespace)) && selector.matches($0.value) }
                    .sorted { $0.key < $1.key }.map { ["type": "ADDED", "object": $0.value] as [String: Any] }
            } else {
                events = history.filter { $0.version > since && $0.key.hasPrefix(prefix(target.kind, target.namespace)) && selector.matches($0.object) }
                    .map { ["type": $0.type, "object": $0.object] as [String: Any] }
            }
            watchers.append(Watcher(kind: target.kind, namespace: target.namespace, selector: selector, stream: stream,
                                    metadataOnly: metadataOnly))
            var all = events
            if bookmarks {
                all.append(["type": "BOOKMARK", "object": ["kind": target.kind.kind, "apiVersion": target.kind.apiVersion,
                                                           "metadata": ["resourceVersion": String(resourceVersion)]]])
            }
            return all
        }
        guard let replay else {
            stream.write(line(["type": "ERROR", "object": statusObject(410, "Expired", "too old resource version: \(since) (\(currentResourceVersion))")]))
            stream.finish()
            return HTTPResponse(status: 200, headers: ["content-type": "application/json"], stream: stream)
        }
        for var event in replay {
            if metadataOnly, event["type"] as? String != "BOOKMARK", let object = event["object"] as? [String: Any] {
                event["object"] = partialObjectMetadata(object)
            }
            stream.write(line(event))
        }
        if let seconds = request.queryValue("timeoutSeconds").flatMap(Double.init) {
            DispatchQueue.global().asyncAfter(deadline: .now() + seconds) { [weak self] in
                self?.locked { self?.watchers.removeAll { $0.stream === stream } }
                stream.finish()
            }
        }
        return HTTPResponse(status: 200, headers: ["content-type": "application/json"], stream: stream)
    }

    private func create(_ target: Target, _ body: [UInt8]) -> HTTPResponse {
        guard var object = parse(body) else { return status(400, "BadRequest", "the body is not a JSON object") }
        var metadata = object["metadata"] as? [String: Any] ?? [:]
        guard let name = (metadata["name"] as? String) ?? (metadata["generateName"] as? String).map({ $0 + randomSuffix() }) else {
            return invalid(target.kind, "", "metadata.name", "name or generateName is required")
        }
        return locked { () -> HTTPResponse in
            let objectKey = key(target.kind, target.namespace, name)
            if objects[objectKey] != nil {
                return status(409, "AlreadyExists", "\(target.kind.qualified) \"\(name)\" already exists",
                              details: ["name": name, "group": target.kind.group, "kind": target.kind.plural])
            }
            resourceVersion += 1
            metadata["name"] = name
            if target.kind.namespaced { metadata["namespace"] = target.namespace }
            metadata["uid"] = UUID().uuidString.lowercased()
            metadata["resourceVersion"] = String(resourceVersion)
            metadata["creationTimestamp"] = timestamp()
            if target.kind.hasStatus {
                metadata["generation"] = 1
                object["status"] = nil
            }
            object["metadata"] = metadata
            object["apiVersion"] = target.kind.apiVersion
            object["kind"] = target.kind.kind
            objects[objectKey] = object
            record("ADDED", objectKey, object)
            return json(201, object)
        }
    }

    enum PatchType { case merge, strategicMerge }

    /// PUT (`patch` nil) or PATCH of `name`.
    private func update(_ target: Target, _ name: String, _ subresource: String?, _ body: [UInt8], patch: PatchType?) -> HTTPResponse {
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
                return invalid(target.kind, name, "metadata.resourceVersion", "must be specified for an update")
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
            resourceVersion += 1
            metadata["resourceVersion"] = String(resourceVersion)
            next["metadata"] = metadata
            next["apiVersion"] = target.kind.apiVersion
            next["kind"] = target.kind.kind
            objects[objectKey] = next
            record("MODIFIED", objectKey, next)
            return json(200, next)
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
                    objects[objectKey] = stored
                    record("MODIFIED", objectKey, stored)
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

    /// Appends to history and tells matching watchers. Called with the lock held.
    private func record(_ type: String, _ objectKey: String, _ object: [String: Any]) {
        history.append((resourceVersion, type, objectKey, object))
        let event = line(["type": type, "object": object])
        for watcher in watchers where objectKey.hasPrefix(prefix(watcher.kind, watcher.namespace)) && watcher.selector.matches(object) {
            watcher.stream.write(watcher.metadataOnly ? line(["type": type, "object": partialObjectMetadata(object)]) : event)
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

    private func invalid(_ kind: ResourceKind, _ name: String, _ field: String, _ message: String) -> HTTPResponse {
        status(422, "Invalid", "\(kind.kind) \"\(name)\" is invalid: \(field): Invalid value: \(message)",
               details: ["name": name, "group": kind.group, "kind": kind.kind,
                         "causes": [["reason": "FieldValueInvalid", "message": "Invalid value: \(message)", "field": field]]])
    }

    private func json(_ code: Int, _ object: [String: Any]) -> HTTPResponse {
        .json(code, Array((try? JSONSerialization.data(withJSONObject: object)) ?? Data()))
    }

    private func line(_ object: [String: Any]) -> [UInt8] {
        Array((try? JSONSerialization.data(withJSONObject: object)) ?? Data()) + [0x0A]
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
        if parts.first == "api" {
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

private func randomSuffix() -> String {
    String((0..<5).map { _ in "bcdfghjklmnpqrstvwxz2456789".randomElement()! })
}

extension HTTPRequest {
    /// Whether the first type the Accept header names is metadata only (the API server
    /// uses the first it can serve), as client-go's metadata informers ask.
    var asksForMetadataOnly: Bool {
        let first = (headers["accept"] ?? "").split(separator: ",").first ?? ""
        return first.contains("as=PartialObjectMetadata")
    }
}

// MARK: Structural schema

extension TestAPIServer {
    /// The openAPIV3Schema of the chart's CRD for pkis: what the real server prunes against.
    static let pkiSchema: YAMLNode? = {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../charts/certgate/crds/pkis.certgate.dev.yaml").standardized.path
        guard let text = try? String(contentsOfFile: path, encoding: .utf8), let crd = try? YAML.document(in: text) else { return nil }
        return crd["spec"]?["versions"]?.sequence?.first?["schema"]?["openAPIV3Schema"]
    }()
}

/// Removes from `object` the fields `schema` does not declare (metadata is the server's own;
/// x-kubernetes-preserve-unknown-fields keeps a subtree whole) and returns their paths,
/// as the API server names them: "spec.rotationPolcy", "spec.usages[0].x".
func pruneUnknownFields(_ object: inout [String: Any], schema: YAMLNode, path: String = "") -> [String] {
    guard schema["x-kubernetes-preserve-unknown-fields"]?.string != "true", let properties = schema["properties"] else { return [] }
    var unknown: [String] = []
    for key in object.keys.sorted() {
        let fieldPath = path.isEmpty ? key : "\(path).\(key)"
        if path.isEmpty && ["apiVersion", "kind", "metadata"].contains(key) { continue }
        guard let fieldSchema = properties[key] else {
            object[key] = nil
            unknown.append(fieldPath)
            continue
        }
        if var child = object[key] as? [String: Any] {
            unknown += pruneUnknownFields(&child, schema: fieldSchema, path: fieldPath)
            object[key] = child
        } else if var elements = object[key] as? [Any], let itemSchema = fieldSchema["items"] {
            for index in elements.indices {
                guard var element = elements[index] as? [String: Any] else { continue }
                unknown += pruneUnknownFields(&element, schema: itemSchema, path: "\(fieldPath)[\(index)]")
                elements[index] = element
            }
            object[key] = elements
        }
    }
    return unknown
}
