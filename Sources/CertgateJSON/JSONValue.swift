/// A whole JSON document as values, for Codable types (the Kubernetes objects the client
/// reads and writes). The admission path does not build one: it reads with ``JSONReader``.
public enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    /// The number's text as written, so an Int64 or a Double is read from it exactly.
    case number(String)
    case string(String)
    case array([JSONValue])
    /// Members in document order; a name given twice keeps its last value when read.
    case object([(name: String, value: JSONValue)])

    /// Parses one document (nesting bounded by ``JSONReader/maxDepth``).
    public static func parse(_ document: [UInt8]) throws -> JSONValue {
        try JSONReader.read(document) { try read(&$0) }
    }

    /// Reads the reader's next value whole (for a part of a document that a Codable type
    /// decodes, inside one that is read field by field).
    public init(reading reader: inout JSONReader) throws {
        self = try JSONValue.read(&reader)
    }

    private static func read(_ reader: inout JSONReader) throws -> JSONValue {
        switch try reader.peek() {
        case .null:
            _ = try reader.readNull()
            return .null
        case .bool:
            return .bool(try reader.readBool())
        case .number:
            return .number(try reader.readNumberText())
        case .string:
            return .string(try reader.readString())
        case .array:
            var elements: [JSONValue] = []
            try reader.readArray { reader, _ in elements.append(try read(&reader)) }
            return .array(elements)
        case .object:
            var members: [(name: String, value: JSONValue)] = []
            try reader.readObject { reader, key in members.append((key.description, try read(&reader))) }
            return .object(members)
        }
    }

    /// The document's compact text.
    public var bytes: [UInt8] {
        var writer = JSONWriter()
        write(to: &writer)
        return writer.bytes
    }

    public func write(to writer: inout JSONWriter) {
        switch self {
        case .null: writer.null()
        case .bool(let value): writer.bool(value)
        case .number(let text): writer.number(text)
        case .string(let value): writer.string(value)
        case .array(let elements):
            writer.array { writer in for element in elements { element.write(to: &writer) } }
        case .object(let members):
            writer.object { writer in
                for member in members {
                    writer.key(member.name)
                    member.value.write(to: &writer)
                }
            }
        }
    }

    public static func == (left: JSONValue, right: JSONValue) -> Bool {
        switch (left, right) {
        case (.null, .null): return true
        case (.bool(let a), .bool(let b)): return a == b
        case (.number(let a), .number(let b)): return a == b
        case (.string(let a), .string(let b)): return a == b
        case (.array(let a), .array(let b)): return a == b
        case (.object(let a), .object(let b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.name == $1.name && $0.value == $1.value }
        default: return false
        }
    }

    /// What a type-mismatch error calls the value.
    var kindName: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .number: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }
}
