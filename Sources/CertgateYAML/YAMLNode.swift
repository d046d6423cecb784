/// Where a node starts in its text, counted from 1 as editors count.
public struct YAMLMark: Sendable, Equatable, CustomStringConvertible {
    public var line: Int
    public var column: Int

    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }

    public var description: String { "line \(line), column \(column)" }
}

/// One node of a YAML document, aliases already replaced by the nodes they name.
///
/// Mappings keep their keys in document order (the policy's error messages and the JSON
/// written from a manifest follow the file), and a key written twice is a parse error.
public struct YAMLNode: Sendable {
    public enum Content: Sendable {
        /// The scalar's text, and whether it was written plain (unquoted, not a block):
        /// only plain scalars are read as numbers, booleans or null.
        case scalar(String, plain: Bool)
        case sequence([YAMLNode])
        case mapping([(key: YAMLNode, value: YAMLNode)])
    }

    public var content: Content
    /// The tag written on the node in full form (`!!int` is `tag:yaml.org,2002:int`); nil
    /// when none was written.
    public var tag: String?
    public var mark: YAMLMark

    public init(_ content: Content, tag: String? = nil, mark: YAMLMark = YAMLMark(line: 1, column: 1)) {
        self.content = content
        self.tag = tag
        self.mark = mark
    }

    /// The text of a scalar; nil for a sequence or mapping.
    public var string: String? {
        if case .scalar(let text, _) = content { return text }
        return nil
    }

    public var sequence: [YAMLNode]? {
        if case .sequence(let items) = content { return items }
        return nil
    }

    public var mapping: [(key: YAMLNode, value: YAMLNode)]? {
        if case .mapping(let entries) = content { return entries }
        return nil
    }

    /// The value under a scalar key of a mapping; nil for other nodes or a missing key.
    public subscript(key: String) -> YAMLNode? {
        mapping?.first { $0.key.string == key }?.value
    }
}

/// What a scalar means, resolved as kubectl resolves it when it turns a manifest into JSON
/// (sigs.k8s.io/yaml on go-yaml v2, YAML 1.1 rules): `size: 256` is a number, `size: "256"`
/// a string, `enabled: yes` a boolean.
public enum YAMLValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int)
    case float(Double)
    case string(String)
}

extension YAMLNode {
    static let tagPrefix = "tag:yaml.org,2002:"

    /// The scalar's value by its tag, or for an untagged plain scalar by YAML 1.1's
    /// implicit rules; nil for a sequence or mapping.
    public var value: YAMLValue? {
        guard case .scalar(let text, let plain) = content else { return nil }
        switch tag {
        case nil where plain: return Self.resolvePlain(text)
        case Self.tagPrefix + "null": return .null
        case Self.tagPrefix + "bool": return Self.bool(text).map(YAMLValue.bool) ?? .string(text)
        case Self.tagPrefix + "int": return Self.int(text).map(YAMLValue.int) ?? .string(text)
        case Self.tagPrefix + "float": return (Self.float(text) ?? Self.int(text).map(Double.init)).map(YAMLValue.float) ?? .string(text)
        default: return .string(text)
        }
    }

    static func resolvePlain(_ text: String) -> YAMLValue {
        if text.isEmpty || text == "~" || text == "null" || text == "Null" || text == "NULL" { return .null }
        if let flag = bool(text) { return .bool(flag) }
        if let number = int(text) { return .int(number) }
        if let number = float(text) { return .float(number) }
        return .string(text)
    }

    static func bool(_ text: String) -> Bool? {
        switch text {
        case "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON": return true
        case "n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF": return false
        default: return nil
        }
    }

    /// Decimal, 0x hexadecimal, 0o or leading-0 octal, 0b binary; `_` separators allowed.
    static func int(_ text: String) -> Int? {
        // As go-yaml: a leading "_" makes a string; elsewhere separators are dropped.
        guard let first = text.first, first != "_" else { return nil }
        var digits = Substring(text.filter { $0 != "_" })
        var negative = false
        if let sign = digits.first, sign == "-" || sign == "+" {
            negative = sign == "-"
            digits = digits.dropFirst()
        }
        var radix = 10
        if digits.hasPrefix("0x") { radix = 16; digits = digits.dropFirst(2) }
        else if digits.hasPrefix("0b") { radix = 2; digits = digits.dropFirst(2) }
        else if digits.hasPrefix("0o") { radix = 8; digits = digits.dropFirst(2) }
        else if digits.count > 1 && digits.hasPrefix("0") { radix = 8; digits = digits.dropFirst() }
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isHexDigit }),
              let magnitude = UInt64(digits, radix: radix) else { return nil }
        if negative {
            guard magnitude <= UInt64(Int64.max) + 1 else { return nil }
            return magnitude == UInt64(Int64.max) + 1 ? Int.min : -Int(magnitude)
        }
        return magnitude <= UInt64(Int.max) ? Int(magnitude) : nil
    }

    /// `1.5`, `-2e3`, `.5`, `.inf`, `-.Inf`, `.nan` (YAML's spellings, not Swift's "inf").
    static func float(_ text: String) -> Double? {
        switch text {
        case ".nan", ".NaN", ".NAN": return .nan
        case ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF": return .infinity
        case "-.inf", "-.Inf", "-.INF": return -.infinity
        default: break
        }
        let allowed = text.utf8.allSatisfy { byte in
            (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
                || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E")
                || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "+")
        }
        guard allowed, text.utf8.contains(where: { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else { return nil }
        return Double(text)
    }
}
