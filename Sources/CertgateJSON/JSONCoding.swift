/// Codable types to and from JSON, through ``JSONValue``: what the Kubernetes client uses
/// for the objects it reads and writes, so the shipped binary needs no Foundation.
///
/// It reads as Foundation's JSONDecoder does where the client can tell: unknown members are
/// ignored, a missing or null member is nil for an Optional and an error otherwise, integers
/// must fit their type. It writes members in the order `encode(to:)` writes them, and omits
/// nil Optionals.
public enum JSONCoding {
    public static func decode<T: Decodable>(_ type: T.Type = T.self, from document: [UInt8]) throws -> T {
        try decode(type, from: try JSONValue.parse(document))
    }

    public static func decode<T: Decodable>(_ type: T.Type = T.self, from value: JSONValue) throws -> T {
        try T(from: ValueDecoder(value, codingPath: []))
    }

    public static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        try encodeValue(value).bytes
    }

    public static func encodeValue<T: Encodable>(_ value: T) throws -> JSONValue {
        let node = EncodingNode()
        try value.encode(to: ValueEncoder(node, codingPath: []))
        return node.value
    }
}

/// A coding key for array positions and dictionary members.
private struct IndexKey: CodingKey {
    let stringValue: String
    let intValue: Int?
    init(stringValue: String) { self.stringValue = stringValue; intValue = nil }
    init(intValue: Int) { stringValue = "\(intValue)"; self.intValue = intValue }
}

// MARK: Decoding

private struct ValueDecoder: Decoder, SingleValueDecodingContainer {
    let value: JSONValue
    /// The path is joined only when asked for (an error, a container): a string or number
    /// member never needs it, and joining it for each was an allocation per value.
    private let parentPath: [any CodingKey]
    private let key: (any CodingKey)?
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    init(_ value: JSONValue, codingPath: [any CodingKey]) {
        self.value = value
        parentPath = codingPath
        key = nil
    }

    init(_ value: JSONValue, in parentPath: [any CodingKey], at key: any CodingKey) {
        self.value = value
        self.parentPath = parentPath
        self.key = key
    }

    var codingPath: [any CodingKey] { key.map { parentPath + [$0] } ?? parentPath }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .object(let members) = value else { throw mismatch([String: Int].self) }
        return KeyedDecodingContainer(KeyedDecoder<Key>(members, codingPath: codingPath))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case .array(let elements) = value else { throw mismatch([Int].self) }
        return UnkeyedDecoder(elements, codingPath: codingPath)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { self }

    func mismatch(_ type: Any.Type) -> DecodingError {
        if value == .null {
            return .valueNotFound(type, .init(codingPath: codingPath, debugDescription: "expected \(type), found null"))
        }
        return .typeMismatch(type, .init(codingPath: codingPath, debugDescription: "expected \(type), found \(value.kindName)"))
    }

    func decodeNil() -> Bool { value == .null }

    func decode(_ type: Bool.Type) throws -> Bool {
        guard case .bool(let bool) = value else { throw mismatch(type) }
        return bool
    }

    func decode(_ type: String.Type) throws -> String {
        guard case .string(let string) = value else { throw mismatch(type) }
        return string
    }

    func decode(_ type: Double.Type) throws -> Double {
        guard case .number(let text) = value else { throw mismatch(type) }
        guard let number = Double(text), number.isFinite else {
            throw DecodingError.dataCorrupted(.init(codingPath: codingPath, debugDescription: "number \(text) does not fit in Double"))
        }
        return number
    }

    func decode(_ type: Float.Type) throws -> Float {
        let number = try decode(Double.self)
        guard abs(number) <= Double(Float.greatestFiniteMagnitude) else {
            throw DecodingError.dataCorrupted(.init(codingPath: codingPath, debugDescription: "number \(number) does not fit in Float"))
        }
        return Float(number)
    }

    func decodeInteger<T: FixedWidthInteger>(_ type: T.Type) throws -> T {
        guard case .number(let text) = value else { throw mismatch(type) }
        if let integer = T(text) { return integer }
        // 3.0 or 1e3 is the integer it denotes, as Foundation reads it; 1.5 is not one.
        if let number = Double(text), number.rounded(.towardZero) == number, let integer = T(exactly: number) { return integer }
        throw DecodingError.dataCorrupted(.init(codingPath: codingPath, debugDescription: "number \(text) does not fit in \(T.self)"))
    }

    func decode(_ type: Int.Type) throws -> Int { try decodeInteger(type) }
    func decode(_ type: Int8.Type) throws -> Int8 { try decodeInteger(type) }
    func decode(_ type: Int16.Type) throws -> Int16 { try decodeInteger(type) }
    func decode(_ type: Int32.Type) throws -> Int32 { try decodeInteger(type) }
    func decode(_ type: Int64.Type) throws -> Int64 { try decodeInteger(type) }
    func decode(_ type: UInt.Type) throws -> UInt { try decodeInteger(type) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try decodeInteger(type) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try decodeInteger(type) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try decodeInteger(type) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try decodeInteger(type) }
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try T(from: self) }
}

private struct KeyedDecoder<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let members: [(name: String, value: JSONValue)]
    /// Member positions by name, for objects too large to search in order (a Secret's data,
    /// a ConfigMap); a name given twice finds its last value.
    let positions: [String: Int]?
    let codingPath: [any CodingKey]

    static var searchedInOrderUpTo: Int { 16 }

    init(_ members: [(name: String, value: JSONValue)], codingPath: [any CodingKey]) {
        self.members = members
        positions = members.count <= Self.searchedInOrderUpTo ? nil
            : Dictionary(members.indices.map { (members[$0].name, $0) }, uniquingKeysWith: { _, last in last })
        self.codingPath = codingPath
    }

    var allKeys: [Key] { members.compactMap { Key(stringValue: $0.name) } }

    private func value(named name: String) -> JSONValue? {
        if let positions { return positions[name].map { members[$0].value } }
        return members.last { $0.name == name }?.value
    }

    func contains(_ key: Key) -> Bool { value(named: key.stringValue) != nil }

    private func decoder(for key: any CodingKey) throws -> ValueDecoder {
        guard let value = value(named: key.stringValue) else {
            throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "no member \"\(key.stringValue)\""))
        }
        return ValueDecoder(value, in: codingPath, at: key)
    }

    func decodeNil(forKey key: Key) throws -> Bool { try decoder(for: key).decodeNil() }
    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try decoder(for: key).decode(type) }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try decoder(for: key).decode(type) }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try decoder(for: key).decode(type) }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try decoder(for: key).decode(type) }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try decoder(for: key).decode(type) }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try decoder(for: key).decode(type) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try decoder(for: key).decode(type) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try decoder(for: key).decode(type) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try decoder(for: key).decode(type) }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try decoder(for: key).decode(type) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try decoder(for: key).decode(type) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try decoder(for: key).decode(type) }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try decoder(for: key).decode(type) }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try decoder(for: key).decode(type) }
    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T { try T(from: try decoder(for: key)) }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try decoder(for: key).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try decoder(for: key).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder { try decoder(for: IndexKey(stringValue: "super")) }
    func superDecoder(forKey key: Key) throws -> any Decoder { try decoder(for: key) }
}

private struct UnkeyedDecoder: UnkeyedDecodingContainer {
    let elements: [JSONValue]
    let codingPath: [any CodingKey]
    private(set) var currentIndex = 0

    init(_ elements: [JSONValue], codingPath: [any CodingKey]) {
        self.elements = elements
        self.codingPath = codingPath
    }

    var count: Int? { elements.count }
    var isAtEnd: Bool { currentIndex >= elements.count }

    private mutating func next() throws -> ValueDecoder {
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(Any.self, .init(codingPath: codingPath, debugDescription: "the array has no element \(currentIndex)"))
        }
        defer { currentIndex += 1 }
        return ValueDecoder(elements[currentIndex], in: codingPath, at: IndexKey(intValue: currentIndex))
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd, elements[currentIndex] == .null else { return false }
        currentIndex += 1
        return true
    }

    mutating func decode(_ type: Bool.Type) throws -> Bool { try next().decode(type) }
    mutating func decode(_ type: String.Type) throws -> String { try next().decode(type) }
    mutating func decode(_ type: Double.Type) throws -> Double { try next().decode(type) }
    mutating func decode(_ type: Float.Type) throws -> Float { try next().decode(type) }
    mutating func decode(_ type: Int.Type) throws -> Int { try next().decode(type) }
    mutating func decode(_ type: Int8.Type) throws -> Int8 { try next().decode(type) }
    mutating func decode(_ type: Int16.Type) throws -> Int16 { try next().decode(type) }
    mutating func decode(_ type: Int32.Type) throws -> Int32 { try next().decode(type) }
    mutating func decode(_ type: Int64.Type) throws -> Int64 { try next().decode(type) }
    mutating func decode(_ type: UInt.Type) throws -> UInt { try next().decode(type) }
    mutating func decode(_ type: UInt8.Type) throws -> UInt8 { try next().decode(type) }
    mutating func decode(_ type: UInt16.Type) throws -> UInt16 { try next().decode(type) }
    mutating func decode(_ type: UInt32.Type) throws -> UInt32 { try next().decode(type) }
    mutating func decode(_ type: UInt64.Type) throws -> UInt64 { try next().decode(type) }
    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { try T(from: try next()) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        try next().container(keyedBy: type)
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer { try next().unkeyedContainer() }
    mutating func superDecoder() throws -> any Decoder { try next() }
}

// MARK: Encoding

/// What one `encode(to:)` wrote; containers hold their children by reference, because a
/// nested container is filled after its parent has handed it out.
private final class EncodingNode {
    enum Kind { case unset, value, object, array }

    private(set) var kind = Kind.unset
    private var scalar = JSONValue.null
    private var members: [(name: String, node: EncodingNode)] = []
    private var elements: [EncodingNode] = []

    /// A type that encodes nothing is an empty object, as with JSONEncoder.
    var value: JSONValue {
        switch kind {
        case .unset: .object([])
        case .value: scalar
        case .object: .object(members.map { ($0.name, $0.node.value) })
        case .array: .array(elements.map(\.value))
        }
    }

    var count: Int { kind == .array ? elements.count : 0 }

    func set(_ value: JSONValue) {
        become(.value)
        scalar = value
    }

    /// Makes this node a container of `kind`; what it held as another kind is dropped, as a
    /// second container of another kind replaces the first in JSONEncoder.
    func become(_ newKind: Kind) {
        guard kind != newKind else { return }
        kind = newKind
        members = []
        elements = []
    }

    /// The node of member `name`; encoding a member twice keeps the last value in its place.
    func member(_ name: String) -> EncodingNode {
        become(.object)
        let child = EncodingNode()
        if let index = members.firstIndex(where: { $0.name == name }) {
            members[index].node = child
        } else {
            members.append((name, child))
        }
        return child
    }

    func element() -> EncodingNode {
        become(.array)
        let child = EncodingNode()
        elements.append(child)
        return child
    }
}

private struct ValueEncoder: Encoder, SingleValueEncodingContainer {
    let node: EncodingNode
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    init(_ node: EncodingNode, codingPath: [any CodingKey]) {
        self.node = node
        self.codingPath = codingPath
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        node.become(.object)
        return KeyedEncodingContainer(KeyedEncoder<Key>(node: node, codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        node.become(.array)
        return UnkeyedEncoder(node: node, codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer { self }

    private func set(_ value: JSONValue) { node.set(value) }

    func encodeNil() { set(.null) }
    func encode(_ value: Bool) { set(.bool(value)) }
    func encode(_ value: String) { set(.string(value)) }

    func encode(_ value: Double) throws {
        guard value.isFinite else {
            throw EncodingError.invalidValue(value, .init(codingPath: codingPath, debugDescription: "\(value) is not a JSON number"))
        }
        // 20, not 20.0, for a whole number, as JSONEncoder writes it.
        if value.rounded(.towardZero) == value, abs(value) < 1e15 { set(.number(String(Int64(value)))) } else { set(.number("\(value)")) }
    }

    func encode(_ value: Float) throws { try encode(Double(value)) }
    func encode(_ value: Int) { set(.number(String(value))) }
    func encode(_ value: Int8) { set(.number(String(value))) }
    func encode(_ value: Int16) { set(.number(String(value))) }
    func encode(_ value: Int32) { set(.number(String(value))) }
    func encode(_ value: Int64) { set(.number(String(value))) }
    func encode(_ value: UInt) { set(.number(String(value))) }
    func encode(_ value: UInt8) { set(.number(String(value))) }
    func encode(_ value: UInt16) { set(.number(String(value))) }
    func encode(_ value: UInt32) { set(.number(String(value))) }
    func encode(_ value: UInt64) { set(.number(String(value))) }
    func encode<T: Encodable>(_ value: T) throws { try value.encode(to: self) }
}

private struct KeyedEncoder<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let node: EncodingNode
    let codingPath: [any CodingKey]

    private func encoder(for key: any CodingKey) -> ValueEncoder {
        ValueEncoder(node.member(key.stringValue), codingPath: codingPath + [key])
    }

    mutating func encodeNil(forKey key: Key) { encoder(for: key).encodeNil() }
    mutating func encode(_ value: Bool, forKey key: Key) { encoder(for: key).encode(value) }
    mutating func encode(_ value: String, forKey key: Key) { encoder(for: key).encode(value) }
    mutating func encode(_ value: Double, forKey key: Key) throws { try encoder(for: key).encode(value) }
    mutating func encode(_ value: Float, forKey key: Key) throws { try encoder(for: key).encode(value) }
    mutating func encode(_ value: Int, forKey key: Key) { encoder(for: key).encode(value) }
    mutating func encode(_ value: Int8, forKey key: Key) { encoder(for: key).encode(value) }
    mutating func encode(_ value: Int16, forKey key: Key) { encoder(for: key).encode(value) }
    mutating func encode(_ value: Int32, forKey key: Key) { encoder(for: key).encode(value) }
    mutating func encode(_ value: Int64, forKey key: Key) { encoder(for: key).encode(value) }
    mutating func encode(_ value: UInt, forKey key: Key) { encoder(for: key).encode(value) }
    mutating func encode(_ value: UInt8, forKey key: Key) { encoder(for: key).encode(value) }
    mutating func encode(_ value: UInt16, forKey key: Key) { encoder(for: key).encode(value) }
    mutating func encode(_ value: UInt32, forKey key: Key) { encoder(for: key).encode(value) }
    mutating func encode(_ value: UInt64, forKey key: Key) { encoder(for: key).encode(value) }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws { try value.encode(to: encoder(for: key)) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        encoder(for: key).container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer { encoder(for: key).unkeyedContainer() }
    mutating func superEncoder() -> any Encoder { encoder(for: IndexKey(stringValue: "super")) }
    mutating func superEncoder(forKey key: Key) -> any Encoder { encoder(for: key) }
}

private struct UnkeyedEncoder: UnkeyedEncodingContainer {
    let node: EncodingNode
    let codingPath: [any CodingKey]

    var count: Int { node.count }

    private func next() -> ValueEncoder {
        let index = count
        return ValueEncoder(node.element(), codingPath: codingPath + [IndexKey(intValue: index)])
    }

    mutating func encodeNil() { next().encodeNil() }
    mutating func encode(_ value: Bool) { next().encode(value) }
    mutating func encode(_ value: String) { next().encode(value) }
    mutating func encode(_ value: Double) throws { try next().encode(value) }
    mutating func encode(_ value: Float) throws { try next().encode(value) }
    mutating func encode(_ value: Int) { next().encode(value) }
    mutating func encode(_ value: Int8) { next().encode(value) }
    mutating func encode(_ value: Int16) { next().encode(value) }
    mutating func encode(_ value: Int32) { next().encode(value) }
    mutating func encode(_ value: Int64) { next().encode(value) }
    mutating func encode(_ value: UInt) { next().encode(value) }
    mutating func encode(_ value: UInt8) { next().encode(value) }
    mutating func encode(_ value: UInt16) { next().encode(value) }
    mutating func encode(_ value: UInt32) { next().encode(value) }
    mutating func encode(_ value: UInt64) { next().encode(value) }
    mutating func encode<T: Encodable>(_ value: T) throws { try value.encode(to: next()) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        next().container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer { next().unkeyedContainer() }
    mutating func superEncoder() -> any Encoder { next() }
}

// MARK: A JSON value as a Decodable

extension JSONValue: Decodable {
    /// The value a decoder is at: JSONCoding's own as it is (for a type that reads its JSON
    /// field by field, such as a Pki); any other decoder's rebuilt from its containers.
    public init(from decoder: any Decoder) throws {
        if let own = decoder as? ValueDecoder {
            self = own.value
            return
        }
        if let object = try? decoder.container(keyedBy: IndexKey.self) {
            self = .object(try object.allKeys.map { ($0.stringValue, try object.decode(JSONValue.self, forKey: $0)) })
            return
        }
        if var array = try? decoder.unkeyedContainer() {
            var elements: [JSONValue] = []
            while !array.isAtEnd { elements.append(try array.decode(JSONValue.self)) }
            self = .array(elements)
            return
        }
        let single = try decoder.singleValueContainer()
        if single.decodeNil() {
            self = .null
        } else if let bool = try? single.decode(Bool.self) {
            self = .bool(bool)
        } else if let integer = try? single.decode(Int64.self) {
            self = .number(String(integer))
        } else if let number = try? single.decode(Double.self) {
            self = .number("\(number)")
        } else {
            self = .string(try single.decode(String.self))
        }
    }
}
