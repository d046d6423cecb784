import CertgateYAML
import Foundation

extension TestAPIServer {
    /// The chart's CRD for pkis: what the double validates and prunes against by default.
    public static let chartCRD = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../charts/certgate/files/pkis.certgate.dev.yaml").standardized.path

    /// The openAPIV3Schema of the CRD in `file`, nil when it cannot be read.
    static func openAPISchema(crdFile file: String) -> YAMLNode? {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8), let crd = try? YAML.document(in: text) else { return nil }
        return crd["spec"]?["versions"]?.sequence?.first?["schema"]?["openAPIV3Schema"]
    }
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

/// One way a value breaks its schema, as a StatusCause of a 422 Invalid.
struct SchemaViolation {
    let field: String
    let reason: String
    let message: String
}

/// What the API server's schema validation finds in `value` (types and enums), in field
/// order: create-422-invalid.http words and orders them so.
func schemaViolations(_ value: Any, schema: YAMLNode, path: String = "") -> [SchemaViolation] {
    if let expected = schema["type"]?.string, !path.isEmpty {
        let actual = jsonTypeName(value)
        let matches = actual == expected || (expected == "number" && actual == "integer")
        if !matches {
            return [SchemaViolation(field: path, reason: "FieldValueTypeInvalid",
                                    message: "Invalid value: \"\(actual)\": \(path) in body must be of type \(expected): \"\(actual)\"")]
        }
    }
    if let allowed = schema["enum"]?.sequence?.compactMap(\.string), let string = value as? String, !allowed.contains(string) {
        return [SchemaViolation(field: path, reason: "FieldValueNotSupported",
                                message: "Unsupported value: \"\(string)\": supported values: " + allowed.map { "\"\($0)\"" }.joined(separator: ", "))]
    }
    if let object = value as? [String: Any], let properties = schema["properties"] {
        return object.keys.sorted().flatMap { key -> [SchemaViolation] in
            if path.isEmpty && ["apiVersion", "kind", "metadata"].contains(key) { return [] }
            guard let fieldSchema = properties[key] else { return [] }
            return schemaViolations(object[key]!, schema: fieldSchema, path: path.isEmpty ? key : "\(path).\(key)")
        }
    }
    if let elements = value as? [Any], let items = schema["items"] {
        return elements.indices.flatMap { schemaViolations(elements[$0], schema: items, path: "\(path)[\($0)]") }
    }
    return []
}

/// The JSON type of a decoded value, as OpenAPI names it.
private func jsonTypeName(_ value: Any) -> String {
    switch value {
    case is String: return "string"
    case is [String: Any]: return "object"
    case is [Any]: return "array"
    case is NSNull: return "null"
    case let number as NSNumber:
        // JSONSerialization's booleans are NSNumbers of type "c"; integers "i" or "q".
        switch String(cString: number.objCType) {
        case "c": return "boolean"
        case "d", "f": return "number"
        default: return "integer"
        }
    default: return "\(type(of: value))"
    }
}
