import CertgateKube
import CertgateKubeTesting
import Foundation
import Testing

/// The wire recorded from kube-apiserver 1.28, beside the repository (../shared/fixtures).
private let recordingsFolder = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("../shared/fixtures/apiserver-1.28").standardized.path

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
        case "Pki": decoded = try decoder.decode(PkiResource.self, from: data)
        case "PkiList": decoded = try decoder.decode(ObjectList<PkiResource>.self, from: data)
        case "Status": decoded = try decoder.decode(APIStatus.self, from: data)
        case "Event": decoded = try decoder.decode(Event.self, from: data)
        case "EventList": decoded = try decoder.decode(ObjectList<Event>.self, from: data)
        case "Secret": decoded = try decoder.decode(Secret.self, from: data)
        case "Lease": decoded = try decoder.decode(Lease.self, from: data)
        case "PartialObjectMetadataList": decoded = try decoder.decode(ObjectList<ObjectMetadataOnly>.self, from: data)
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
        var decoder = WatchStreamDecoder<PkiResource>()
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
