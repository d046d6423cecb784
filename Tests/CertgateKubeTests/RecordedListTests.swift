import CertgatePKI
import CertgateHTTP
import CertgateKube
import CertgateKubeTesting
import CertgateMetrics
import CertgateNet
import CertgateTLS
import CertgateTestSupport
import Foundation
import Logging
import Testing


/// The body of a recorded `curl -i` answer (curl removed the chunked framing).
private func recordedListBody(_ name: String) throws -> [UInt8] {
    let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: "\(recordings)/\(name)")))
    let separator = Array("\r\n\r\n".utf8)
    guard let start = (0..<(bytes.count - 3)).first(where: { Array(bytes[$0..<$0 + 4]) == separator }) else {
        throw RecordingError(file: name)
    }
    return Array(bytes[(start + 4)...])
}

/// A JSON object's members ([:] when it is not one).
private func jsonObject(_ bytes: some Sequence<UInt8>) throws -> [String: Any] {
    try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] ?? [:]
}

/// curl against the test API server with its CA and token; `arguments` come before the URL.
private func curl(_ api: TestAPIServer, _ arguments: [String], _ path: String) throws -> ProcessResult {
    try runProcess("curl", ["-sS", "--max-time", "5", "--cacert", api.pki.caFile, "-H", "Authorization: Bearer \(api.token)"]
        + arguments + ["https://127.0.0.1:\(api.port)\(path)"])
}

/// An informer whose handlers do nothing: these tests look at the wire and the cache.
private func startInformer<Object: KubeObject>(_ api: RecordedListServer, _ resource: Resource, _: Object.Type,
                                               watchTimeouts: ClosedRange<Int> = 300...600,
                                               watchSilenceGrace: Double = KubeClient.watchSilenceGraceSeconds) throws -> Informer<Object> {
    let informer = Informer<Object>(client: try KubeClient(configuration: api.clusterConfiguration), resource: resource, namespace: "app1",
                                    watchTimeouts: watchTimeouts, watchSilenceGrace: watchSilenceGrace,
                                    handlers: InformerHandlers(onAdd: { _ in }, onUpdate: { _, _ in }, onDelete: { _ in }))
    try informer.start()
    return informer
}

/// Asks `condition` every 20 ms until it holds or `seconds` have passed.
private func waitUntil(_ seconds: Double = 10, _ condition: () -> Bool) {
    let deadline = Date().addingTimeInterval(seconds)
    while !condition() && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
}

private struct RecordingError: Error, CustomStringConvertible {
    let file: String
    var description: String { "the recording \(file) has no blank line after its head" }
}

/// An HTTPS server that answers list requests for app1's pkis with recorded pages, chosen by
/// whether the request carries a continue token, and holds watches open without events.
private final class RecordedListServer: Sendable {
    let pki: TestPKI
    let port: UInt16
    /// List requests served (watches not counted).
    let lists = Shared(0)
    let watchRequests = Shared(0)
    /// The Accept header of every request, in order.
    let acceptHeaders = Shared<[String]>([])
    private let directory: TemporaryDirectory
    private let group: EventLoopGroup
    private let server: HTTPServer
    private let watches = Shared<[ResponseStream]>([])

    /// With `watchesEndAtOnce`, every watch is answered with an empty stream that ends at
    /// once, as a proxy that cuts streaming answers would.
    init(firstPage: String, nextPage: String?, watchesEndAtOnce: Bool = false) throws {
        directory = TemporaryDirectory()
        pki = try TestPKI(in: directory)
        let serving = ServingCertificate(files: ServingCertificateFiles(certificateFile: pki.certificateFile, keyFile: pki.keyFile))
        if let error = serving.reload() { throw error }
        let first = try recordedListBody(firstPage)
        let next = try nextPage.map(recordedListBody)
        group = try EventLoopGroup(count: 1, namePrefix: "recorded-api")
        var router = Router()
        let lists = lists
        let watches = watches
        let watchRequests = watchRequests
        let acceptHeaders = acceptHeaders
        router.fallback = { request in
            acceptHeaders.update { $0.append(request.headers["accept"] ?? "") }
            let query = request.query ?? ""
            if query.contains("watch=true") {
                watchRequests.update { $0 += 1 }
                if watchesEndAtOnce { return HTTPResponse(status: 200, headers: ["content-type": "application/json"]) }
                let stream = ResponseStream()
                watches.update { $0.append(stream) }
                return HTTPResponse(status: 200, headers: ["content-type": "application/json"], stream: stream)
            }
            // Bounded: a client that never stops paging gets errors, not an endless stream of pages.
            var served = 0
            lists.update { $0 += 1; served = $0 }
            guard served <= 20 else { return .error(500, "too many list requests") }
            let page = query.contains("continue=") && !query.contains("continue=&") && !query.hasSuffix("continue=") ? next : first
            return .json(200, page ?? first)
        }
        var logger = Logger(label: "recorded-api")
        logger.logLevel = .critical
        server = HTTPServer(configuration: HTTPServerConfiguration(name: "recorded", addresses: [try SocketAddress(host: "127.0.0.1", port: 0)], tls: serving),
                            router: router, group: group, metrics: ServerMetrics(registry: MetricsRegistry()), logger: logger)
        port = try server.start()[0].port
    }

    var clusterConfiguration: ClusterConfiguration {
        ClusterConfiguration(host: "127.0.0.1", port: port, tls: TLSClientConfiguration(trustRoots: [pki.ca]), token: nil, source: "recorded")
    }

    func stop() {
        for stream in watches.value { stream.finish() }
        server.shutdown(gracePeriod: 1)
        group.stopAndWait()
    }
}

/// The last page of a custom-resource list carries "continue":"" (an empty string, not an
/// absent key); an informer that took it for a next page listed forever and never synced.
@Suite struct RecordedListTests {
    @Test func oneRecordedPage() throws {
        try expectOnePass(firstPage: "list-pkis.http", nextPage: nil, pages: 1)
    }

    @Test func twoRecordedPages() throws {
        try expectOnePass(firstPage: "list-pkis-limit1.http", nextPage: "list-pkis-limit1-continue.http", pages: 2)
    }

    private func expectOnePass(firstPage: String, nextPage: String?, pages: Int) throws {
        let api = try RecordedListServer(firstPage: firstPage, nextPage: nextPage)
        defer { api.stop() }
        let informer = try startInformer(api, .pkis, Pki.self)
        defer { informer.stop() }
        waitUntil { informer.hasSynced }
        #expect(informer.hasSynced, "not synced after \(api.lists.value) list requests")
        #expect(api.lists.value == pages)
        #expect(informer.get(namespace: "app1", name: "app1-pki") != nil)
        #expect(informer.get(namespace: "app1", name: "app2-pki") != nil)
    }

    /// The double's list metadata as the recordings show it, for a custom resource and a built-in kind.
    @Test func theTestAPIServerEndsListsAsTheRecordingsDo() throws {
        let api = try TestAPIServer()
        defer { api.stop() }
        let client = try KubeClient(configuration: api.clusterConfiguration())
        _ = try client.create(.pkis, namespace: "app1", samplePki("a"))
        func listMetadata(_ path: String) throws -> [String: Any] {
            try jsonObject(try curl(api, [], path).stdout.utf8)["metadata"] as? [String: Any] ?? [:]
        }
        func recordedMetadata(_ name: String) throws -> [String: Any] {
            try jsonObject(try recordedListBody(name))["metadata"] as? [String: Any] ?? [:]
        }
        let pkis = try listMetadata("/apis/certgate.dev/v1/namespaces/app1/pkis")
        #expect(pkis["continue"] as? String == "", "\(pkis)")
        #expect(try recordedMetadata("list-pkis.http")["continue"] as? String == "")
        let secrets = try listMetadata("/api/v1/namespaces/app1/secrets")
        #expect(secrets["continue"] == nil, "\(secrets)")
        #expect(try recordedMetadata("list-secrets-metadata-only-200.http")["continue"] == nil)
    }

    /// A watch that ends at once without an event used to be retried at once, without end
    /// (hundreds of requests a second); now every retry waits, longer each time.
    @Test func watchesThatEndAtOnceAreRetriedWithGrowingPauses() throws {
        let api = try RecordedListServer(firstPage: "list-pkis.http", nextPage: nil, watchesEndAtOnce: true)
        defer { api.stop() }
        let informer = try startInformer(api, .pkis, Pki.self)
        Thread.sleep(forTimeInterval: 3)
        informer.stop()
        #expect(informer.hasSynced)
        // 0.8 s, then 1.6 s, each with up to as much again of jitter: at most three passes in 3 s.
        let requests = api.lists.value + api.watchRequests.value
        #expect(api.lists.value >= 1 && api.lists.value <= 3, "\(api.lists.value) lists")
        #expect(requests <= 6, "\(api.lists.value) lists and \(api.watchRequests.value) watches in 3 s")
    }

    /// A foreground delete answers 200 with the object, now being deleted, and the object
    /// stays: the double's answer against pki-delete-foreground-200.http.
    @Test func theTestAPIServerDeletesInTheForegroundAsRecorded() throws {
        let api = try TestAPIServer()
        defer { api.stop() }
        let client = try KubeClient(configuration: api.clusterConfiguration())
        _ = try client.create(.pkis, namespace: "app1", samplePki("a"))
        let result = try curl(api, ["-X", "DELETE", "-H", "Content-Type: application/json",
                                    "--data", #"{"kind":"DeleteOptions","apiVersion":"meta.k8s.io/v1","propagationPolicy":"Foreground"}"#],
                              "/apis/certgate.dev/v1/namespaces/app1/pkis/a")
        let answered = try jsonObject(result.stdout.utf8)
        let recorded = try jsonObject(try recordedListBody("pki-delete-foreground-200.http"))
        #expect(answered["kind"] as? String == recorded["kind"] as? String, "\(answered)")
        let ours = answered["metadata"] as? [String: Any] ?? [:]
        let theirs = recorded["metadata"] as? [String: Any] ?? [:]
        for field in ["deletionTimestamp", "deletionGracePeriodSeconds", "finalizers"] {
            #expect((ours[field] == nil) == (theirs[field] == nil), "\(field): \(ours)")
        }
        #expect(ours["finalizers"] as? [String] == theirs["finalizers"] as? [String])
        #expect(try client.get(.pkis, namespace: "app1", name: "a", as: Pki.self).metadata.deletionTimestamp != nil)
    }

    /// Secrets are watched for their names and owners only: asking for PartialObjectMetadata
    /// keeps every Secret's data (Helm releases hold megabytes each) off the wire and out of
    /// memory. The recorded metadata-only list decodes as the informer's objects.
    @Test func theSecretInformerAsksForMetadataOnly() throws {
        let api = try RecordedListServer(firstPage: "list-secrets-metadata-only-200.http", nextPage: nil)
        defer { api.stop() }
        let informer = try startInformer(api, .secrets, PartialObjectMetadata.self)
        defer { informer.stop() }
        waitUntil { informer.hasSynced && api.watchRequests.value > 0 }
        #expect(informer.get(namespace: "app1", name: "s1") != nil)
        let accepts = api.acceptHeaders.value
        #expect(accepts.count >= 2)
        #expect(accepts.first?.hasPrefix("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1") == true, "\(accepts)")
        #expect(accepts.dropFirst().allSatisfy { $0.hasPrefix("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1") }, "\(accepts)")
    }

    /// The double answers a metadata-only list as the recording shows, without the data.
    @Test func theTestAPIServerAnswersMetadataOnlyAsRecorded() throws {
        let api = try TestAPIServer()
        defer { api.stop() }
        let client = try KubeClient(configuration: api.clusterConfiguration())
        _ = try client.create(.secrets, namespace: "app1", Secret(metadata: ObjectMeta(name: "s1", namespace: "app1"), type: "Opaque",
                                                                  data: ["k": Array(repeating: 0x61, count: 1000)]))
        let result = try curl(api, ["-H", "Accept: application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"],
                              "/api/v1/namespaces/app1/secrets?limit=500")
        let ours = try jsonObject(result.stdout.utf8)
        let theirs = try jsonObject(try recordedListBody("list-secrets-metadata-only-200.http"))
        #expect(ours["kind"] as? String == theirs["kind"] as? String, "\(ours)")
        #expect(ours["apiVersion"] as? String == theirs["apiVersion"] as? String)
        let ourItem = (ours["items"] as? [[String: Any]])?.first ?? [:]
        let theirItem = (theirs["items"] as? [[String: Any]])?.first ?? [:]
        #expect(Set(ourItem.keys) == Set(theirItem.keys), "\(ourItem.keys) vs \(theirItem.keys)")
        #expect(ourItem["kind"] as? String == "PartialObjectMetadata")
        #expect(!result.stdout.contains("\"data\""))
    }

    /// A watch that stays open but silent well past its timeoutSeconds (a black-holed
    /// connection, a proxy that lost its upstream) is abandoned and the informer lists again,
    /// instead of trusting a cache that no longer follows the cluster.
    @Test func aSilentWatchIsAbandonedAndTheInformerListsAgain() throws {
        let api = try RecordedListServer(firstPage: "list-pkis.http", nextPage: nil)
        defer { api.stop() }
        let informer = try startInformer(api, .pkis, Pki.self, watchTimeouts: 1...1, watchSilenceGrace: 1)
        defer { informer.stop() }
        waitUntil { api.lists.value >= 2 }
        #expect(api.lists.value >= 2, "\(api.lists.value) lists, \(api.watchRequests.value) watches")
        #expect(api.watchRequests.value >= 1)
    }

    /// Client connections probe an idle peer (TCP keepalive), as Go's dialer does for client-go.
    @Test func clientConnectionsUseTCPKeepalive() throws {
        let api = try RecordedListServer(firstPage: "list-pkis.http", nextPage: nil)
        defer { api.stop() }
        let client = try KubeClient(configuration: api.clusterConfiguration)
        _ = try client.list(.pkis, namespace: "app1", of: Pki.self)
        // The connection waits in the client's pool; ss shows its keepalive timer.
        let sockets = try runProcess("ss", ["-tnoH", "state", "established", "( dport = :\(api.port) )"])
        #expect(sockets.stdout.contains("keepalive"), "\(sockets.output)")
    }

    /// A field the CRD does not declare: refused under fieldValidation=Strict (what kubectl
    /// sends), pruned with a Warning otherwise, as the recordings show. The recorded field is
    /// declared by this chart's CRD, so another undeclared one stands in for it.
    @Test func theTestAPIServerPrunesAndRefusesUnknownFieldsAsRecorded() throws {
        let api = try TestAPIServer()
        defer { api.stop() }
        let recordedBody = try String(contentsOfFile: "\(recordings)/requests/create-unknown-field.body", encoding: .utf8)
        let body = recordedBody.replacingOccurrences(of: "rotationPolicy", with: "colour")
        func create(_ query: String) throws -> (head: String, body: [String: Any]) {
            let result = try curl(api, ["-i", "--http1.1", "-H", "Content-Type: application/json", "--data-binary", body],
                                  "/apis/certgate.dev/v1/namespaces/app1/pkis\(query)")
            let parts = result.stdout.components(separatedBy: "\r\n\r\n")
            return (parts.first ?? "", try jsonObject((parts.last ?? "").utf8))
        }
        func recorded(_ name: String) throws -> (head: String, body: [String: Any]) {
            let text = try String(contentsOfFile: "\(recordings)/\(name)", encoding: .utf8).replacingOccurrences(of: "rotationPolicy", with: "colour")
            let parts = text.components(separatedBy: "\r\n\r\n")
            return (parts[0], try jsonObject(parts[1].utf8))
        }

        let strict = try create("?fieldValidation=Strict")
        let refused = try recorded("create-400-unknown-field-strict.http")
        #expect(strict.head.hasPrefix("HTTP/1.1 400"), "\(strict.head)")
        for field in ["kind", "status", "reason", "message"] {
            #expect(strict.body[field] as? String == refused.body[field] as? String, "\(field): \(strict.body)")
        }
        #expect(strict.body["code"] as? Int == refused.body["code"] as? Int)

        let pruned = try create("")
        let kept = try recorded("create-201-unknown-field-pruned-warning.http")
        #expect(pruned.head.hasPrefix("HTTP/1.1 201"), "\(pruned.head)")
        let warning = { (head: String) in head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("warning:") }.map { String($0.dropFirst(8)).trimmingCharacters(in: .whitespaces) } }
        #expect(warning(pruned.head) != nil && warning(pruned.head) == warning(kept.head), "\(pruned.head)")
        let spec = pruned.body["spec"] as? [String: Any] ?? [:]
        #expect(spec["colour"] == nil)
        #expect(Set(spec.keys) == Set((kept.body["spec"] as? [String: Any] ?? [:]).keys))
    }
}

