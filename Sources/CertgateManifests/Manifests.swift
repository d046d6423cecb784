import CertgateJSON
import CertgatePKI
import CertgateYAML

/// One object of a manifest file.
public struct ManifestObject: Sendable {
    /// Position of the document in its file, from 0.
    public var document: Int
    public var apiVersion: String?
    public var kind: String?
    /// The object as JSON, as the API server would store it.
    public var json: [UInt8]
    /// The object as written, with where each node starts.
    public var node: YAMLNode

    /// Whether this is a certgate.dev Pki (any version Certgate serves).
    public var isPki: Bool {
        kind == Pki.kind && (apiVersion?.hasPrefix(Pki.group + "/") ?? false)
    }

    /// Reads it as a Pki with the same decoding the webhook uses.
    public func pki() throws -> Pki {
        try JSONReader.read(json) { try Pki(reading: &$0) }
    }

    /// The field at a rule's path ("spec.dnsNames[1]", "spec.privateKey.size"): the line
    /// its key or list item starts on, and its text when it is a scalar. A field that is
    /// missing ("spec.serviceName" left out) gives the line of the nearest enclosing one.
    public func field(at path: String) -> (line: Int, value: String?) {
        var current = node
        var line = node.mark.line
        for segment in FieldPath.segments(of: path) {
            switch segment {
            case .key(let name):
                guard let entry = current.mapping?.first(where: { $0.key.string == name }) else { return (line, nil) }
                line = entry.key.mark.line
                current = entry.value
            case .index(let index):
                guard let items = current.sequence, items.indices.contains(index) else { return (line, nil) }
                line = items[index].mark.line
                current = items[index]
            }
        }
        return (line, current.string)
    }
}

/// A rule's field path, as the webhook writes it: names joined by dots, list indices in brackets.
enum FieldPath {
    enum Segment: Equatable {
        case key(String)
        case index(Int)
    }

    /// "spec.dnsNames[1]" is spec, dnsNames, 1; in "labels[app.kubernetes.io/name]" the
    /// brackets hold a map key, dots and all.
    static func segments(of path: String) -> [Segment] {
        var segments: [Segment] = []
        var name = ""
        var inBrackets = false
        func endName() {
            if !name.isEmpty { segments.append(.key(name)) }
            name = ""
        }
        for character in path {
            switch (character, inBrackets) {
            case (".", false): endName()
            case ("[", false): endName(); inBrackets = true
            case ("]", true):
                segments.append(Int(name).map(Segment.index) ?? .key(name))
                name = ""
                inBrackets = false
            default: name.append(character)
            }
        }
        endName()
        return segments
    }
}

/// A manifest that is not YAML or JSON.
public struct ManifestError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public var description: String { message }
}

public enum Manifests {
    /// Every non-empty document of a multi-document YAML (or JSON) text, `List` kinds unrolled.
    public static func objects(in text: String) throws -> [ManifestObject] {
        var objects: [ManifestObject] = []
        let documents: [YAMLNode]
        do {
            documents = try YAML.documents(in: text)
        } catch {
            throw ManifestError(message: "not valid YAML: \(error)")
        }
        for (index, node) in documents.enumerated() where node.mapping != nil {
            if node["kind"]?.string?.hasSuffix("List") == true, let items = node["items"]?.sequence {
                for item in items where item.mapping != nil { objects.append(object(item, document: index)) }
            } else {
                objects.append(object(node, document: index))
            }
        }
        return objects
    }

    private static func object(_ node: YAMLNode, document: Int) -> ManifestObject {
        var writer = JSONWriter()
        write(node, to: &writer)
        return ManifestObject(document: document, apiVersion: node["apiVersion"]?.string,
                              kind: node["kind"]?.string, json: writer.bytes, node: node)
    }

    /// YAML to JSON by the tags YAML resolved: `size: 256` is a number, `size: "256"` a string.
    private static func write(_ node: YAMLNode, to writer: inout JSONWriter) {
        switch node.content {
        case .mapping(let entries):
            writer.object { object in
                for (key, value) in entries {
                    object.key(key.string ?? "")
                    write(value, to: &object)
                }
            }
        case .sequence(let items):
            writer.array { array in
                for item in items { write(item, to: &array) }
            }
        case .scalar(let text, _):
            switch node.value ?? .string(text) {
            case .null: writer.null()
            case .bool(let value): writer.bool(value)
            case .int(let value): writer.int(value)
            // JSON has no NaN or infinity: such a value stays the text it was written as.
            case .float(let value): if value.isFinite { writer.number(String(value)) } else { writer.string(text) }
            case .string(let value): writer.string(value)
            }
        }
    }
}
