import CertgateJSON
import CertgatePKI
import Yams

/// One object of a manifest file.
public struct ManifestObject: Sendable {
    /// Position of the document in its file, from 0.
    public var document: Int
    public var apiVersion: String?
    public var kind: String?
    /// The object as JSON, as the API server would store it.
    public var json: [UInt8]

    /// Whether this is a certgate.dev Pki (any version Certgate serves).
    public var isPki: Bool {
        kind == Pki.kind && (apiVersion?.hasPrefix(Pki.group + "/") ?? false)
    }

    /// Reads it as a Pki with the same decoding the webhook uses.
    public func pki() throws -> Pki {
        try JSONReader.read(json) { try Pki(reading: &$0) }
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
        do {
            // The sequence stops at a parse error and keeps it rather than throwing.
            var documents = try Yams.compose_all(yaml: text)
            var index = -1
            while let node = documents.next() {
                index += 1
                guard let mapping = node.mapping else { continue }
                if mapping["kind"]?.string?.hasSuffix("List") == true, let items = mapping["items"]?.sequence {
                    for item in items where item.mapping != nil { objects.append(object(item, document: index)) }
                } else {
                    objects.append(object(node, document: index))
                }
            }
            if let error = documents.error { throw error }
        } catch let error as ManifestError {
            throw error
        } catch {
            throw ManifestError(message: "not valid YAML: \(describeYAMLError(error))")
        }
        return objects
    }

    private static func object(_ node: Node, document: Int) -> ManifestObject {
        var writer = JSONWriter()
        write(node, to: &writer)
        return ManifestObject(document: document, apiVersion: node.mapping?["apiVersion"]?.string,
                              kind: node.mapping?["kind"]?.string, json: writer.bytes)
    }

    /// YAML to JSON by the tags YAML resolved: `size: 256` is a number, `size: "256"` a string.
    private static func write(_ node: Node, to writer: inout JSONWriter) {
        switch node {
        case .mapping(let mapping):
            writer.object { object in
                for (key, value) in mapping {
                    object.key(key.string ?? "")
                    write(value, to: &object)
                }
            }
        case .sequence(let sequence):
            writer.array { array in
                for item in sequence { write(item, to: &array) }
            }
        case .scalar(let scalar):
            switch Tag.Name(rawValue: node.tag.rawValue) {
            case .int: if let value = node.int { writer.int(value) } else { writer.string(scalar.string) }
            case .float: if let value = node.float, value.isFinite { writer.number(String(value)) } else { writer.string(scalar.string) }
            case .bool: if let value = node.bool { writer.bool(value) } else { writer.string(scalar.string) }
            case .null: writer.null()
            default: writer.string(scalar.string)
            }
        case .alias:
            writer.null()
        }
    }
}
