import CertgatePKI
import CertgateKube
import CertgateKubeTesting
import CertgateTestSupport
import Foundation
import Testing

/// The wire recorded from kube-apiserver 1.28 (Tests/Fixtures/apiserver-1.28, with the README
/// that says how each file was produced).
private let recordingsFolder = recordings

/// The client's decoders on every body a real API server sent: each decodes, and what the
/// decoded value says (encoded again) is what the recording says, field for field.
struct RecordedBodyDecodingTests {
    /// Bodies no code of Certgate reads, by their `kind`.
    static let unread: [String: String] = [
        "APIResourceList": "discovery: the client knows its resources' paths and never asks",
    ]

    static var answerFiles: [String] { (try? RecordingCatalog(directory: recordingsFolder).answerFiles) ?? [] }

    @Test func everyRecordingIsFound() throws {
        // Guards the folder itself: without it every test below would pass on nothing.
        #expect(Self.answerFiles.count >= 40, "recordings in \(recordingsFolder)")
    }

    @Test(arguments: answerFiles)
    func decodes(_ file: String) throws {
        let catalog = try RecordingCatalog(directory: recordingsFolder)
        let answer = try catalog.answer(file)
        if answer.chunks != nil {
            try decodeWatch(answer, file)
            return
        }
        let json = try #require(answer.json, "\(file): the body is JSON")
        guard let object = json as? [String: Any], let kind = object["kind"] as? String else {
            // /version has no kind; the client does not read it.
            #expect(file == "version-200.http", "\(file): a body without kind")
            return
        }
        if Self.unread[kind] != nil { return }
        let decoder = JSONDecoder()
        let data = Data(answer.body)
        let decoded: any Encodable
        switch kind {
        case "Pki": decoded = try decoder.decode(Pki.self, from: data)
        case "PkiList": decoded = try decoder.decode(ObjectList<Pki>.self, from: data)
        case "Status": decoded = try decoder.decode(APIStatus.self, from: data)
        case "Event": decoded = try decoder.decode(Event.self, from: data)
        case "EventList": decoded = try decoder.decode(ObjectList<Event>.self, from: data)
        case "Secret": decoded = try decoder.decode(Secret.self, from: data)
        case "Lease": decoded = try decoder.decode(Lease.self, from: data)
        case "PartialObjectMetadataList": decoded = try decoder.decode(ObjectList<PartialObjectMetadata>.self, from: data)
        default:
            Issue.record("\(file): no decoder for kind \(kind); add one, or say in `unread` why the client never reads it")
            return
        }
        let encoded = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(decoded))
        for difference in differences(decoded: encoded, recorded: object, at: kind) {
            Issue.record("\(file): \(difference)")
        }
    }

    /// Feeds the chunks as they came (events cut across chunks included) to the stream decoder.
    private func decodeWatch(_ answer: RecordedAnswer, _ file: String) throws {
        var decoder = WatchStreamDecoder<Pki>()
        var types: [String] = []
        for chunk in answer.chunks ?? [] {
            _ = try decoder.append(chunk) { event in
                switch event {
                case .added: types.append("ADDED")
                case .modified: types.append("MODIFIED")
                case .deleted: types.append("DELETED")
                case .bookmark(let version): types.append(version.isEmpty ? "BOOKMARK without resourceVersion" : "BOOKMARK")
                case .error(let status): types.append("ERROR \(status.code)")
                }
                return true
            }
        }
        let recorded = String(decoding: answer.body, as: UTF8.self).split(separator: "\n").map { line -> String in
            let event = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
            let type = event?["type"] as? String ?? "?"
            let code = ((event?["object"] as? [String: Any])?["code"] as? Int).map { " \($0)" } ?? ""
            return type + code
        }
        #expect(types == recorded, "\(file)")
        #expect(!types.isEmpty, "\(file)")
    }

    @Test func theDecodedWatchStreamMatchesTheRawOne() throws {
        let catalog = try RecordingCatalog(directory: recordingsFolder)
        let lines = try catalog.bytes("watch-pkis.jsonl")
        #expect(lines == (try catalog.answer("watch-pkis.raw")).body)
    }
}

/// Where `decoded` (a client type encoded again) says something other than `recorded`.
/// Keys the recording lacks are differences too, except the apiVersion and kind Swift
/// types fill in (list items of built-in kinds carry neither).
func differences(decoded: Any, recorded: Any?, at path: String) -> [String] {
    switch decoded {
    case let object as [String: Any]:
        guard let recordedObject = recorded as? [String: Any] else { return ["\(path): an object where the recording has \(describe(recorded))"] }
        return object.keys.sorted().flatMap { key -> [String] in
            if recordedObject[key] == nil && (key == "apiVersion" || key == "kind") { return [] }
            return differences(decoded: object[key]!, recorded: recordedObject[key], at: "\(path).\(key)")
        }
    case let array as [Any]:
        guard let recordedArray = recorded as? [Any], recordedArray.count == array.count else {
            return ["\(path): \(array.count) elements where the recording has \(describe(recorded))"]
        }
        return array.indices.flatMap { differences(decoded: array[$0], recorded: recordedArray[$0], at: "\(path)[\($0)]") }
    default:
        guard let recorded, (decoded is String) == (recorded is String), "\(decoded)" == "\(recorded)" else {
            return ["\(path): decoded \(decoded), recorded \(describe(recorded))"]
        }
        return []
    }
}

private func describe(_ value: Any?) -> String {
    guard let value else { return "nothing" }
    return "\(value)"
}

/// The test API server held to the recordings: every recorded answer whose request can be
/// sent again is asked of the double, in the state the recording was made in, with curl as
/// the recording was made; the two answers must have the same status, Content-Type and
/// Warning headers, the same JSON at every level (only volatile values may differ), and
/// watches the same framing. The requests come from the README of the recordings, so a new
/// recording listed there is held to without new code.
@Suite struct TestAPIServerConformanceTests {
    /// Recordings the double cannot answer alike, and why.
    static let skipped: [String: String] = [
        "admission-denied-403.http": "the denial comes from a validating webhook the real server called; the double calls no "
            + "admission webhooks (Certgate's answers to the recorded reviews are held to them in CertgateWebhookTests)",
        "admission-warning-dryrun-201.http": "its Warning comes from a validating webhook; the double calls no admission webhooks",
    ]

    @Test func everySkippedRecordingExists() throws {
        let files = Set(RecordedBodyDecodingTests.answerFiles)
        for file in Self.skipped.keys { #expect(files.contains(file), "\(file) is skipped but not recorded") }
    }

    @Test(arguments: RecordedBodyDecodingTests.answerFiles)
    func answersAsRecorded(_ file: String) throws {
        if let reason = Self.skipped[file] {
            print("conformance: skipping \(file): \(reason)")
            return
        }
        let catalog = try RecordingCatalog(directory: recordingsFolder)
        let recorded = try catalog.answer(file)
        let request = try catalog.request(for: file)
        let world = RecordedWorld(catalog)
        let api = try TestAPIServer(pkiCRD: try recordedCRD())
        defer { api.stop() }
        let driver = Driver(api: api)
        try prepare(api, request, recorded, world)
        let answer: RecordedAnswer
        if request.query("watch") == "1" || request.query("watch") == "true" {
            answer = try watch(api, driver, request, recorded)
        } else {
            answer = try send(request, to: api)
        }
        for problem in conformanceProblems(double: answer, recorded: recorded) {
            Issue.record("\(file): \(problem)")
        }
    }

    // MARK: The state a recording was made in

    /// Seeds what must have existed for the recorded answer: the object a GET, PUT, PATCH
    /// or DELETE found (as it was before), a list's items, the object a create collided with;
    /// moves the resourceVersion counter to the request's; compacts for a recorded 410.
    private func prepare(_ api: TestAPIServer, _ request: RecordedRequest, _ recorded: RecordedAnswer,
                         _ world: RecordedWorld) throws {
        let requestedVersion = request.query("resourceVersion").flatMap(Int.init)
        if let requestedVersion { api.advanceResourceVersion(to: requestedVersion) }
        let body = recorded.json as? [String: Any]
        let statusBody = body?["kind"] as? String == "Status" ? body : nil
        let watchError = recorded.chunks != nil && String(decoding: recorded.body, as: UTF8.self).contains(#""type":"ERROR""#)
        if let requestedVersion, recorded.status == 410 || watchError { api.compact(below: requestedVersion + 1) }
        let path = ResourcePath(request.path)
        let sent = request.body.flatMap { try? JSONSerialization.jsonObject(with: Data($0)) as? [String: Any] }
        let sentVersion = (sent?["metadata"] as? [String: Any])?["resourceVersion"] as? String
        switch (request.method, recorded.status, path?.name) {
        case ("GET", 200..<300, _?) where statusBody == nil:
            body.map(api.seed)
        case ("GET", 200..<300, nil) where recorded.chunks == nil:
            guard let list = body, let path else { return }
            let items = list["items"] as? [[String: Any]] ?? []
            for item in items { api.seed(path.fullObject(item)) }
            // A page that says more remain: as many more recorded objects of the collection.
            let remaining = (list["metadata"] as? [String: Any])?["remainingItemCount"] as? Int ?? 0
            let lastName = (items.last?["metadata"] as? [String: Any])?["name"] as? String ?? ""
            for object in world.objects(path.apiVersion, path.kind, path.namespace).filter({ name(of: $0) > lastName }).prefix(remaining) {
                api.seed(object)
            }
        case ("PUT", 200..<300, _), ("PATCH", 200..<300, _):
            // The object as it was before the write: the answer without what the request
            // sets, so only a double that applies the body answers as recorded.
            guard var before = body, let sent else { return }
            before = withoutWhatIsWritten(before, sent: sent, method: request.method, subresource: path?.subresource)
            if let sentVersion { before = setting(before, resourceVersion: sentVersion) }
            api.seed(before)
        case ("PUT", 409, let name?):
            guard let path, var latest = world.latest(path.apiVersion, path.kind, path.namespace, name) ?? sent else { return }
            if (latest["metadata"] as? [String: Any])?["resourceVersion"] as? String == sentVersion {
                latest = setting(latest, resourceVersion: String((Int(sentVersion ?? "") ?? 0) + 1))
            }
            api.seed(latest)
        case ("PUT", _, let name?):
            guard let path, let latest = world.latest(path.apiVersion, path.kind, path.namespace, name) ?? sent else { return }
            api.seed(latest)
        case ("POST", 409, _):
            sent.map(api.seed)
        case ("DELETE", 200..<300, let name?):
            guard let path else { return }
            if let statusBody {
                let uid = (statusBody["details"] as? [String: Any])?["uid"] as? String
                if var object = world.latest(path.apiVersion, path.kind, path.namespace, name) {
                    var metadata = object["metadata"] as? [String: Any] ?? [:]
                    metadata["uid"] = uid ?? metadata["uid"]
                    object["metadata"] = metadata
                    api.seed(object)
                }
            } else if var object = body {
                var metadata = object["metadata"] as? [String: Any] ?? [:]
                metadata["deletionTimestamp"] = nil
                metadata["deletionGracePeriodSeconds"] = nil
                metadata["finalizers"] = (metadata["finalizers"] as? [String] ?? []).filter { $0 != "foregroundDeletion" }.nilIfEmpty
                object["metadata"] = metadata
                api.seed(object)
            }
        default:
            break
        }
    }

    // MARK: Watches

    /// The events of a recorded watch happened before it (replayed: older than the answer's
    /// Date) or while it ran (live). The replayed ones are made first, through the API, then
    /// the watch is sent with curl and the live ones are made while it runs.
    private func watch(_ api: TestAPIServer, _ driver: Driver, _ request: RecordedRequest, _ recorded: RecordedAnswer) throws -> RecordedAnswer {
        let events = String(decoding: recorded.body, as: UTF8.self).split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
        }.filter { ["ADDED", "MODIFIED", "DELETED"].contains($0["type"] as? String) }
        let started = recorded.values("date").first.flatMap(httpDate) ?? .distantPast
        let firstLive = events.firstIndex { event in
            latestTime(of: event["object"] as? [String: Any] ?? [:]).map { $0 >= started } ?? false
        } ?? events.count
        for event in events[..<firstLive] { try driver.make(event) }
        let outcome = Shared<Result<RecordedAnswer, Error>?>(nil)
        let finished = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            outcome.update { $0 = Result { try send(request, to: api) } }
            finished.signal()
        }
        let deadline = Date().addingTimeInterval(5)
        while api.openWatches == 0 && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        for event in events[firstLive...] { try driver.make(event) }
        if request.maxTime != nil {
            // Cut by curl after its BOOKMARK (watch-pkis.raw, a minute in): the bookmark timer
            // is run now, and the connection cut as curl's --max-time did.
            Thread.sleep(forTimeInterval: 0.2)
            api.sendBookmarks()
            Thread.sleep(forTimeInterval: 0.3)
            api.dropWatches(abruptly: true)
        }
        let limit = (request.query("timeoutSeconds").flatMap(Double.init) ?? 4) + 10
        guard finished.wait(timeout: .now() + limit) == .success, let result = outcome.value else {
            throw RecordingError("the watch did not end within \(limit) s")
        }
        return try result.get()
    }

    // MARK: Comparing

    private func conformanceProblems(double: RecordedAnswer, recorded: RecordedAnswer) -> [String] {
        var problems: [String] = []
        if double.httpVersion != recorded.httpVersion { problems.append("\(double.httpVersion) where the real server spoke \(recorded.httpVersion)") }
        if double.status != recorded.status { problems.append("status \(double.status) where the real server answered \(recorded.status)") }
        for header in ["content-type", "warning"] where double.values(header) != recorded.values(header) {
            problems.append("\(header): \(double.values(header)) where the real server sent \(recorded.values(header))")
        }
        if let recordedChunks = recorded.chunks {
            let doubleChunks = double.chunks ?? []
            if framing(doubleChunks) != framing(recordedChunks) {
                problems.append("watch framing \(framing(doubleChunks)) where the real server framed \(framing(recordedChunks))")
            }
            if double.ended != recorded.ended { problems.append(recorded.ended ? "the watch did not end" : "the watch ended") }
            let doubleEvents = jsonLines(double.body), recordedEvents = jsonLines(recorded.body)
            if doubleEvents.count != recordedEvents.count {
                problems.append("\(doubleEvents.count) events where the real server sent \(recordedEvents.count)")
            } else {
                for index in doubleEvents.indices {
                    problems += jsonDifferences(double: doubleEvents[index], recorded: recordedEvents[index], at: "event[\(index)]")
                }
            }
            return problems
        }
        let pretty = { (answer: RecordedAnswer) in answer.body.starts(with: Array("{\n".utf8)) }
        if pretty(double) != pretty(recorded) { problems.append(pretty(recorded) ? "compact JSON where the real server indented" : "indented JSON") }
        if (double.body.last == 0x0A) != (recorded.body.last == 0x0A) {
            problems.append(recorded.body.last == 0x0A ? "the body does not end in a newline" : "the body ends in a newline")
        }
        guard let recordedJSON = recorded.json else { return problems }
        guard let doubleJSON = double.json else { return problems + ["the body is not JSON: \(String(decoding: double.body.prefix(200), as: UTF8.self))"] }
        return problems + jsonDifferences(double: doubleJSON, recorded: recordedJSON, at: "body")
    }

    /// How a watch was cut into chunks: one event each, or runs of replayed events cut
    /// anywhere.
    private func framing(_ chunks: [[UInt8]]) -> [String] {
        var shapes: [String] = []
        for chunk in chunks {
            let lines = jsonLines(chunk)
            let whole = chunk.last == 0x0A && chunk.first == UInt8(ascii: "{") && lines.count == 1
            let shape = whole ? "one \((lines[0] as? [String: Any])?["type"] as? String ?? "?") event" : "replayed events cut anywhere"
            if shape != shapes.last || whole { shapes.append(shape) }
        }
        return shapes
    }
}

/// The CustomResourceDefinition of pkis the recordings were made with (crd-for-capture.yaml).
private func recordedCRD() throws -> String {
    let files = try FileManager.default.contentsOfDirectory(atPath: recordingsFolder).filter { $0.hasSuffix(".yaml") }.sorted()
    guard let file = files.first(where: { file in
        let text = (try? String(contentsOfFile: "\(recordingsFolder)/\(file)", encoding: .utf8)) ?? ""
        return text.contains("kind: CustomResourceDefinition") && text.contains("name: pkis.certgate.dev")
    }) else { throw RecordingError("no CustomResourceDefinition of pkis among the recordings") }
    return "\(recordingsFolder)/\(file)"
}

private func name(of object: [String: Any]) -> String {
    (object["metadata"] as? [String: Any])?["name"] as? String ?? ""
}

/// Keys whose values a re-sent request cannot reproduce.
private let volatileKeys: Set<String> = ["uid", "resourceVersion", "creationTimestamp", "deletionTimestamp", "time", "storageVersionHash",
                                         "gitCommit", "buildDate"]

/// Where the double's JSON differs from the recorded: keys, types, list lengths, and values
/// other than volatile ones (Status messages compared with their numbers masked: resource
/// versions in "too old resource version: 300 (307)").
private func jsonDifferences(double: Any, recorded: Any, at path: String, key: String = "") -> [String] {
    switch (double, recorded) {
    case (let object as [String: Any], let recordedObject as [String: Any]):
        var problems: [String] = []
        let missing = Set(recordedObject.keys).subtracting(object.keys).sorted()
        let extra = Set(object.keys).subtracting(recordedObject.keys).sorted()
        if !missing.isEmpty { problems.append("\(path): no \(missing.joined(separator: ", ")) where the real server sends it") }
        if !extra.isEmpty { problems.append("\(path): \(extra.joined(separator: ", ")) that the real server does not send") }
        for name in Set(object.keys).intersection(recordedObject.keys).sorted() {
            problems += jsonDifferences(double: object[name]!, recorded: recordedObject[name]!, at: "\(path).\(name)", key: name)
        }
        return problems
    case (let array as [Any], let recordedArray as [Any]):
        guard array.count == recordedArray.count else {
            return ["\(path): \(array.count) elements where the real server sent \(recordedArray.count): \(jsonText(array)) vs \(jsonText(recordedArray))"]
        }
        return array.indices.flatMap { jsonDifferences(double: array[$0], recorded: recordedArray[$0], at: "\(path)[\($0)]", key: key) }
    default:
        let doubleType = typeName(double), recordedType = typeName(recorded)
        if doubleType != recordedType { return ["\(path): a \(doubleType) where the real server sent a \(recordedType)"] }
        if volatileKeys.contains(key) || (key == "continue" && "\(double)" != "" && "\(recorded)" != "") { return [] }
        let masked = { (value: Any) in key == "message" ? "\(value)".replacingOccurrences(of: "[0-9]+", with: "N", options: .regularExpression) : "\(value)" }
        return masked(double) == masked(recorded) ? [] : ["\(path): \(double) where the real server sent \(recorded)"]
    }
}

private func typeName(_ value: Any) -> String {
    switch value {
    case is String: return "string"
    case is NSNull: return "null"
    case is [String: Any]: return "object"
    case is [Any]: return "array"
    case let number as NSNumber: return String(cString: number.objCType) == "c" ? "boolean" : "number"
    default: return "\(type(of: value))"
    }
}


private func jsonLines(_ bytes: [UInt8]) -> [Any] {
    bytes.split(separator: 0x0A).compactMap { try? JSONSerialization.jsonObject(with: Data($0)) }
}

/// `object` without what a PUT or a merge PATCH of `sent` writes: a PUT of the status
/// subresource writes `status`; a PUT of the object everything but its metadata and status;
/// a patch each field it names, down to the values it sets.
private func withoutWhatIsWritten(_ object: [String: Any], sent: [String: Any], method: String, subresource: String?) -> [String: Any] {
    var object = object
    if method == "PUT" {
        for key in sent.keys where subresource == "status" ? key == "status" : !["apiVersion", "kind", "metadata", "status"].contains(key) {
            object[key] = nil
        }
        return object
    }
    for (key, value) in sent where key != "metadata" {
        if let patch = value as? [String: Any], let current = object[key] as? [String: Any] {
            object[key] = withoutWhatIsWritten(current, sent: patch, method: method, subresource: nil)
        } else {
            object[key] = nil
        }
    }
    return object
}

private func setting(_ object: [String: Any], resourceVersion: String) -> [String: Any] {
    var object = object
    var metadata = object["metadata"] as? [String: Any] ?? [:]
    metadata["resourceVersion"] = resourceVersion
    object["metadata"] = metadata
    return object
}

/// The latest time an object says something happened to it: created, or written by a manager.
private func latestTime(of object: [String: Any]) -> Date? {
    let metadata = object["metadata"] as? [String: Any] ?? [:]
    let times = [metadata["creationTimestamp"] as? String] + (metadata["managedFields"] as? [[String: Any]] ?? []).map { $0["time"] as? String }
    return times.compactMap { $0.flatMap { ISO8601DateFormatter().date(from: $0) } }.max()
}

private func httpDate(_ text: String) -> Date? {
    let formatter = DateFormatter()
    formatter.locale = Locale(identifier: "en_US_POSIX")
    formatter.timeZone = TimeZone(identifier: "GMT")
    formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
    return formatter.date(from: text)
}

extension Array {
    fileprivate var nilIfEmpty: Self? { isEmpty ? nil : self }
}

/// A request path to a resource: /api/v1 or /apis/GROUP/VERSION, [namespaces/NS], PLURAL, [NAME], [SUB].
private struct ResourcePath {
    let apiVersion: String
    let plural: String
    let namespace: String?
    let name: String?
    let subresource: String?

    init?(_ path: String) {
        var parts = path.split(separator: "/").map(String.init)
        if parts.first == "api", parts.count >= 3 {
            apiVersion = parts[1]
            parts.removeFirst(2)
        } else if parts.first == "apis", parts.count >= 4 {
            apiVersion = "\(parts[1])/\(parts[2])"
            parts.removeFirst(3)
        } else {
            return nil
        }
        if parts.first == "namespaces", parts.count >= 3 {
            namespace = parts[1]
            parts.removeFirst(2)
        } else {
            namespace = nil
        }
        guard let plural = parts.first else { return nil }
        self.plural = plural
        name = parts.count > 1 ? parts[1] : nil
        subresource = parts.count > 2 ? parts[2] : nil
    }

    /// The kinds recorded here are their plural without the "s", capitalised.
    var kind: String { plural.prefix(1).uppercased() + plural.dropFirst().dropLast() }

    var collection: String {
        (apiVersion.contains("/") ? "/apis/\(apiVersion)" : "/api/\(apiVersion)") + (namespace.map { "/namespaces/\($0)" } ?? "") + "/\(plural)"
    }

    /// A list item as a whole object: list items of built-in kinds lack apiVersion and kind,
    /// PartialObjectMetadata items lack everything but metadata.
    func fullObject(_ item: [String: Any]) -> [String: Any] {
        var object = item
        if item["kind"] as? String == "PartialObjectMetadata" {
            object = ["metadata": item["metadata"] ?? [String: Any]()]
        }
        object["apiVersion"] = apiVersion
        object["kind"] = kind
        return object
    }
}

/// Every object the recordings show (answers, list items, watch events), by identity.
private struct RecordedWorld {
    private var versions: [String: [[String: Any]]] = [:]

    init(_ catalog: RecordingCatalog) {
        for file in catalog.answerFiles {
            guard let answer = try? catalog.answer(file) else { continue }
            let bodies: [Any] = answer.chunks != nil ? jsonLines(answer.body).compactMap { ($0 as? [String: Any])?["object"] } : [answer.json as Any]
            for case let body as [String: Any] in bodies {
                let kind = body["kind"] as? String ?? ""
                if kind.hasSuffix("List") {
                    let itemKind = String(kind.dropLast(4))
                    for case var item as [String: Any] in body["items"] as? [Any] ?? [] where itemKind != "PartialObjectMetadata" {
                        item["apiVersion"] = item["apiVersion"] ?? body["apiVersion"]
                        item["kind"] = item["kind"] ?? itemKind
                        add(item)
                    }
                } else if kind != "Status", (body["metadata"] as? [String: Any])?["name"] != nil {
                    add(body)
                }
            }
        }
    }

    private mutating func add(_ object: [String: Any]) {
        let metadata = object["metadata"] as? [String: Any] ?? [:]
        let identity = [object["apiVersion"] as? String, object["kind"] as? String, metadata["namespace"] as? String, metadata["name"] as? String]
            .map { $0 ?? "" }.joined(separator: "|")
        versions[identity, default: []].append(object)
    }

    /// The latest recorded version of every object of a kind in a namespace, by name.
    func objects(_ apiVersion: String, _ kind: String, _ namespace: String?) -> [[String: Any]] {
        let prefix = [apiVersion, kind, namespace ?? ""].joined(separator: "|") + "|"
        return versions.filter { $0.key.hasPrefix(prefix) }.compactMap { $0.value.max { version($0) < version($1) } }
            .sorted { name(of: $0) < name(of: $1) }
    }

    /// The recorded version of an object with the highest resourceVersion.
    func latest(_ apiVersion: String, _ kind: String, _ namespace: String?, _ name: String) -> [String: Any]? {
        versions[[apiVersion, kind, namespace ?? "", name].joined(separator: "|")]?.max { version($0) < version($1) }
    }

    private func version(_ object: [String: Any]) -> Int {
        Int((object["metadata"] as? [String: Any])?["resourceVersion"] as? String ?? "") ?? 0
    }
}

/// Sends `request` to the test API server with curl, as the recording was made, and reads
/// curl's output as the recordings were read.
private func send(_ request: RecordedRequest, to api: TestAPIServer) throws -> RecordedAnswer {
    let directory = TemporaryDirectory()
    let output = directory.file("answer")
    var arguments = ["-sS", "-i", "--cacert", api.pki.caFile, "-o", output, request.http2 ? "--http2" : "--http1.1"]
    if let agent = request.userAgent { arguments += ["-A", agent] }
    for header in request.headers { arguments += ["-H", "\(header.name): \(header.value)"] }
    switch request.credentials {
    case .admin: arguments += ["-H", "Authorization: Bearer \(api.token)"]
    case .none: break
    case .unknownToken(let token): arguments += ["-H", "Authorization: Bearer \(token)"]
    case .serviceAccount(let namespace, let name):
        arguments += ["-H", "Authorization: Bearer \(api.serviceAccountToken(namespace: namespace, name: name))"]
    }
    if request.method != "GET" { arguments += ["-X", request.method] }
    if let body = request.body {
        try Data(body).write(to: URL(fileURLWithPath: directory.file("body")))
        arguments += ["--data-binary", "@" + directory.file("body")]
    }
    if request.raw { arguments += ["--raw", "-N"] }
    // A watch the recording shows cut by curl is cut by the test (see watch()); this bounds it.
    if request.maxTime != nil { arguments += ["--max-time", "20"] }
    arguments.append("https://127.0.0.1:\(api.port)\(request.target ?? "/")")
    let result = try runProcess("curl", arguments, timeout: 30)
    guard let bytes = try? [UInt8](Data(contentsOf: URL(fileURLWithPath: output))), !bytes.isEmpty else {
        throw RecordingError("curl got no answer: \(result.output)")
    }
    return try RecordedAnswer(parsing: bytes, raw: request.raw)
}

/// Makes recorded watch events happen on the test API server, through its API, as the
/// manager each object's managedFields names.
private final class Driver {
    let api: TestAPIServer
    private var made: [String: [String: Any]] = [:]

    init(api: TestAPIServer) { self.api = api }

    func make(_ event: [String: Any]) throws {
        guard let type = event["type"] as? String, let object = event["object"] as? [String: Any],
              let metadata = object["metadata"] as? [String: Any], let name = metadata["name"] as? String,
              let apiVersion = object["apiVersion"] as? String, let kind = object["kind"] as? String else { return }
        let namespace = metadata["namespace"] as? String
        let collection = (apiVersion.contains("/") ? "/apis/\(apiVersion)" : "/api/\(apiVersion)")
            + (namespace.map { "/namespaces/\($0)" } ?? "") + "/\(kind.lowercased())s"
        let identity = "\(collection)/\(name)"
        let previous = made[identity]
        defer { made[identity] = object }
        switch type {
        case "ADDED":
            var created = object.filter { $0.key != "status" }
            created["metadata"] = metadata.filter { ["name", "namespace", "labels", "annotations", "ownerReferences", "finalizers"].contains($0.key) }
            try call("POST", collection, created, manager: manager(of: object, subresource: nil))
            if object["status"] != nil { try writeStatus(object, at: identity) }
        case "MODIFIED":
            let own = { (object: [String: Any]?) -> String in
                let metadata = object?["metadata"] as? [String: Any] ?? [:]
                return jsonText([object?["spec"] ?? NSNull(), metadata["labels"] ?? NSNull(), metadata["annotations"] ?? NSNull()])
            }
            if own(previous) != own(object) {
                var current = try call("GET", identity, nil, manager: nil)
                current["spec"] = object["spec"]
                var currentMetadata = current["metadata"] as? [String: Any] ?? [:]
                currentMetadata["labels"] = metadata["labels"]
                currentMetadata["annotations"] = metadata["annotations"]
                currentMetadata["managedFields"] = nil
                current["metadata"] = currentMetadata
                try call("PUT", identity, current, manager: manager(of: object, subresource: nil))
            }
            if jsonText(previous?["status"] ?? NSNull()) != jsonText(object["status"] ?? NSNull()) { try writeStatus(object, at: identity) }
        case "DELETED":
            try call("DELETE", identity, nil, manager: nil)
        default:
            break
        }
    }

    private func writeStatus(_ object: [String: Any], at identity: String) throws {
        var current = try call("GET", identity, nil, manager: nil)
        current["status"] = object["status"]
        try call("PUT", "\(identity)/status", current, manager: manager(of: object, subresource: "status"))
    }

    /// The manager of the object's latest write through `subresource`.
    private func manager(of object: [String: Any], subresource: String?) -> String {
        let entries = ((object["metadata"] as? [String: Any])?["managedFields"] as? [[String: Any]] ?? [])
            .filter { $0["subresource"] as? String == subresource }
        return entries.max { ($0["time"] as? String ?? "") < ($1["time"] as? String ?? "") }?["manager"] as? String ?? "certgate-capture"
    }

    @discardableResult
    private func call(_ method: String, _ path: String, _ body: [String: Any]?, manager: String?) throws -> [String: Any] {
        let directory = TemporaryDirectory()
        var arguments = ["-sS", "--cacert", api.pki.caFile, "-H", "Authorization: Bearer \(api.token)", "-A", "certgate-capture/1.0",
                         "-H", "Content-Type: application/json", "-X", method]
        if let body {
            try JSONSerialization.data(withJSONObject: body).write(to: URL(fileURLWithPath: directory.file("body")))
            arguments += ["--data-binary", "@" + directory.file("body")]
        }
        let query = manager.map { "?fieldManager=\($0)" } ?? ""
        let result = try runProcess("curl", arguments + ["https://127.0.0.1:\(api.port)\(path)\(query)"], timeout: 10)
        let answer = (try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8))) as? [String: Any] ?? [:]
        if answer["kind"] as? String == "Status", answer["status"] as? String == "Failure" {
            throw RecordingError("\(method) \(path) failed while replaying the recording: \(result.stdout)")
        }
        return answer
    }
}
