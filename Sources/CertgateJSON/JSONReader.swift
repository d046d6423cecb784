#if canImport(Glibc)
import Glibc
#endif

/// A JSON value that is not what the reader was asked for, with where it was.
public struct JSONError: Error, CustomStringConvertible, Equatable, Sendable {
    /// Byte offset in the document.
    public let offset: Int
    public let message: String

    public init(offset: Int, _ message: String) {
        self.offset = offset
        self.message = message
    }

    public var description: String { "invalid JSON at byte \(offset): \(message)" }
}

/// A pull reader over a JSON document that decodes only what its caller asks for.
///
/// Decoding an AdmissionReview with Foundation's JSONDecoder builds every value of the
/// object (managedFields, annotations, last-applied-configuration) before any of it is
/// used; this reader matches object keys as bytes, skips unwanted values without building
/// them, and makes Strings only for the values kept.
///
///     let uid = try JSONReader.read(body) { reader in
///         var uid = ""
///         try reader.readObject { reader, key in
///             if key == "uid" { uid = try reader.readString() } else { try reader.skipValue() }
///         }
///         return uid
///     }
public struct JSONReader: ~Copyable {
    /// What the next value is.
    public enum Kind: Equatable, Sendable { case object, array, string, number, bool, null }

    private let bytes: UnsafeBufferPointer<UInt8>
    private var index = 0
    private var depth = 0
    /// Deeper nesting is refused: no real Kubernetes object comes close, and recursion must be bounded.
    public static let maxDepth = 128

    private init(_ bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
    }

    /// Reads one document with `body`, then checks that nothing but whitespace follows.
    public static func read<T>(_ document: [UInt8], _ body: (inout JSONReader) throws -> T) throws -> T {
        try document.withUnsafeBufferPointer { buffer in
            var reader = JSONReader(buffer)
            let value = try body(&reader)
            reader.skipWhitespace()
            if reader.index < buffer.count { throw reader.error("unexpected data after the document") }
            return value
        }
    }

    /// The byte offset of the next value, for error messages.
    public var offset: Int { index }

    // MARK: Values

    public mutating func peek() throws -> Kind {
        skipWhitespace()
        guard index < bytes.count else { throw error("unexpected end of document") }
        switch bytes[index] {
        case UInt8(ascii: "{"): return .object
        case UInt8(ascii: "["): return .array
        case UInt8(ascii: "\""): return .string
        case UInt8(ascii: "t"), UInt8(ascii: "f"): return .bool
        case UInt8(ascii: "n"): return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number
        default: throw error("unexpected character \(describe(bytes[index]))")
        }
    }

    /// Calls `field` for every member of an object; `field` must consume the value.
    public mutating func readObject(_ field: (inout JSONReader, JSONKey) throws -> Void) throws {
        try expect(UInt8(ascii: "{"), "an object")
        try enter()
        skipWhitespace()
        if consume(UInt8(ascii: "}")) { depth -= 1; return }
        while true {
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw error("expected a member name") }
            let key = try readKey()
            skipWhitespace()
            guard consume(UInt8(ascii: ":")) else { throw error("expected ':' after a member name") }
            let before = index
            try field(&self, key)
            if index == before { throw error("the value of \"\(key)\" was not read") }
            skipWhitespace()
            if consume(UInt8(ascii: ",")) { continue }
            if consume(UInt8(ascii: "}")) { break }
            throw error("expected ',' or '}' in an object")
        }
        depth -= 1
    }

    /// Calls `element` for every element of an array with its index; `element` must consume it.
    public mutating func readArray(_ element: (inout JSONReader, Int) throws -> Void) throws {
        try expect(UInt8(ascii: "["), "an array")
        try enter()
        skipWhitespace()
        if consume(UInt8(ascii: "]")) { depth -= 1; return }
        var position = 0
        while true {
            let before = index
            try element(&self, position)
            if index == before { throw error("array element \(position) was not read") }
            position += 1
            skipWhitespace()
            if consume(UInt8(ascii: ",")) { continue }
            if consume(UInt8(ascii: "]")) { break }
            throw error("expected ',' or ']' in an array")
        }
        depth -= 1
    }

    public mutating func readString() throws -> String {
        try readString(usuallyOneOf: [])
    }

    /// A string that is usually one of `common`: string literals, handed out as they are,
    /// where making a String of the bytes (checking them as UTF-8, and allocating past 15
    /// bytes) cost more than comparing them. Any other value is read as readString reads it.
    public mutating func readString(usuallyOneOf common: [String]) throws -> String {
        skipWhitespace()
        guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw error("expected a string") }
        let (start, end, escapes) = try scanString()
        let raw = UnsafeBufferPointer(rebasing: bytes[start..<end])
        if escapes == .none, let base = raw.baseAddress {
            for var candidate in common where candidate.utf8.count == raw.count {
                if candidate.withUTF8({ memcmp($0.baseAddress!, base, raw.count) == 0 }) { return candidate }
            }
        }
        return escapes != .none ? try unescape(raw, at: start) : String(decoding: raw, as: UTF8.self)
    }

    /// An array of strings, or nil for `null`.
    public mutating func readStringArray() throws -> [String]? {
        if try readNull() { return nil }
        var values: [String] = []
        try readArray { reader, _ in values.append(try reader.readString()) }
        return values
    }

    public mutating func readBool() throws -> Bool {
        skipWhitespace()
        if consumeLiteral("true") { return true }
        if consumeLiteral("false") { return false }
        throw error("expected true or false")
    }

    /// Consumes `null` and returns true, or returns false and consumes nothing.
    public mutating func readNull() throws -> Bool {
        skipWhitespace()
        return consumeLiteral("null")
    }

    /// An integer; a fraction or exponent is refused rather than rounded. When it throws
    /// for a valid number, the number is left unread (``readDouble()`` can still read it).
    public mutating func readInt() throws -> Int {
        skipWhitespace()
        let start = index
        let (end, integral) = try scanNumber()
        guard integral else {
            index = start
            throw JSONError(offset: start, "expected an integer")
        }
        var value = 0
        var position = start
        let negative = bytes[position] == UInt8(ascii: "-")
        if negative { position += 1 }
        while position < end {
            let (product, overflowMultiply) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflowAdd) = product.addingReportingOverflow(Int(bytes[position] - UInt8(ascii: "0")))
            if overflowMultiply || overflowAdd {
                index = start
                throw JSONError(offset: start, "integer out of range")
            }
            value = sum
            position += 1
        }
        return negative ? -value : value
    }

    /// Any number, as Double.
    public mutating func readDouble() throws -> Double {
        skipWhitespace()
        let start = index
        let (end, _) = try scanNumber()
        guard let value = Double(String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<end]), as: UTF8.self)) else {
            throw JSONError(offset: start, "number out of range")
        }
        return value
    }

    /// A number's text as written (syntax checked), for a caller that picks its type later.
    public mutating func readNumberText() throws -> String {
        skipWhitespace()
        let start = index
        let (end, _) = try scanNumber()
        return String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<end]), as: UTF8.self)
    }

    /// Skips one value of any kind, checking its syntax as strictly as reading it would
    /// (the same errors at the same offsets), without building it.
    ///
    /// A loop over an explicit stack rather than readObject and readArray calling back into
    /// it: most of an AdmissionReview is skipped (managedFields, annotations), and closures
    /// and member names per value made skipping it cost more than everything that is read.
    public mutating func skipValue() throws {
        // Bit n says whether the container n levels below the skipped value is an object.
        // Nesting is bounded by maxDepth, so 128 bits always suffice.
        var objects: UInt128 = 0
        var level = 0
        while true {
            // A value starts here. Its first byte is looked at here rather than through
            // peek(): a call per skipped value cost more than the rest of the loop.
            skipWhitespace()
            guard index < bytes.count else { throw error("unexpected end of document") }
            var closed = true
            switch bytes[index] {
            case UInt8(ascii: "{"):
                index += 1
                try enter()
                skipWhitespace()
                if !consume(UInt8(ascii: "}")) {
                    objects |= 1 << level
                    level += 1
                    try skipMemberName()
                    closed = false
                } else {
                    depth -= 1
                }
            case UInt8(ascii: "["):
                index += 1
                try enter()
                skipWhitespace()
                if !consume(UInt8(ascii: "]")) {
                    objects &= ~(1 << level)
                    level += 1
                    closed = false
                } else {
                    depth -= 1
                }
            case UInt8(ascii: "\""): try skipString()
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): _ = try scanNumber()
            case UInt8(ascii: "t"), UInt8(ascii: "f"): _ = try readBool()
            case UInt8(ascii: "n"): guard try readNull() else { throw error("expected null") }
            case let other: throw error("unexpected character \(describe(other))")
            }
            guard closed else { continue }
            // After a value: a separator to the next one, or the ends of containers.
            while level > 0 {
                skipWhitespace()
                let inObject = (objects >> (level - 1)) & 1 == 1
                if consume(UInt8(ascii: ",")) {
                    if inObject { try skipMemberName() }
                    break
                }
                if consume(inObject ? UInt8(ascii: "}") : UInt8(ascii: "]")) {
                    level -= 1
                    depth -= 1
                    continue
                }
                throw error(inObject ? "expected ',' or '}' in an object" : "expected ',' or ']' in an array")
            }
            if level == 0 { return }
        }
    }

    /// Moves past `"name" :` inside an object being skipped.
    @inline(__always)
    private mutating func skipMemberName() throws {
        skipWhitespace()
        guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw error("expected a member name") }
        try skipString()
        skipWhitespace()
        guard consume(UInt8(ascii: ":")) else { throw error("expected ':' after a member name") }
    }

    /// Moves past a string, checking its escapes without decoding them anywhere. The scan
    /// has checked the one-character escapes (the quotes of an embedded JSON document, such
    /// as kubectl's last-applied-configuration); only a string with another escape (\u, or
    /// an invalid one) is walked again, for decodeEscapes to check and word it.
    private mutating func skipString() throws {
        let (start, end, escapes) = try scanString()
        if escapes == .other {
            var nowhere = DiscardedBytes()
            try decodeEscapes(UnsafeBufferPointer(rebasing: bytes[start..<end]), at: start, into: &nowhere)
        }
    }

    // MARK: Scanning

    @inline(__always)
    private mutating func skipWhitespace() {
        while index < bytes.count {
            let byte = bytes[index]
            // Compact JSON, as the API server sends it, has no whitespace between tokens:
            // every byte that can be whitespace is at most a space, so one comparison
            // settles nearly every call.
            if byte > 0x20 { return }
            switch byte {
            case 0x20, 0x0A, 0x0D, 0x09: index += 1
            default: return
            }
        }
    }

    @inline(__always)
    private mutating func consume(_ byte: UInt8) -> Bool {
        if index < bytes.count && bytes[index] == byte {
            index += 1
            return true
        }
        return false
    }

    private mutating func expect(_ byte: UInt8, _ what: String) throws {
        skipWhitespace()
        guard consume(byte) else {
            throw error(index < bytes.count ? "expected \(what), found \(describe(bytes[index]))" : "expected \(what), found the end")
        }
    }

    private mutating func enter() throws {
        depth += 1
        if depth > JSONReader.maxDepth { throw error("nested deeper than \(JSONReader.maxDepth) levels") }
    }

    private mutating func consumeLiteral(_ literal: StaticString) -> Bool {
        let count = literal.utf8CodeUnitCount
        guard index + count <= bytes.count else { return false }
        let matches = literal.withUTF8Buffer { expected in
            (0..<count).allSatisfy { bytes[index + $0] == expected[$0] }
        }
        if matches { index += count }
        return matches
    }

    /// What escapes a scanned string holds.
    private enum Escapes { case none, oneCharacter, other }

    /// Moves past a string; returns the bounds of its contents and what escapes it has.
    ///
    /// Works on locals and reads eight bytes at a time: there are a hundred strings and
    /// more in an AdmissionReview, and this was the reader's most expensive loop.
    @inline(__always)
    private mutating func scanString() throws -> (start: Int, end: Int, escapes: Escapes) {
        let start = index + 1
        let count = bytes.count
        guard let base = bytes.baseAddress else { throw JSONError(offset: index, "unterminated string") }
        var position = start
        var escapes = Escapes.none
        while true {
            while count - position >= 8 {
                let word = UInt64(littleEndian: UnsafeRawPointer(base + position).loadUnaligned(as: UInt64.self))
                let matches = stringSpecialBytes(word)
                if matches != 0 {
                    position += matches.trailingZeroBitCount / 8
                    break
                }
                position += 8
            }
            guard position < count else { break }
            let byte = base[position]
            if byte == UInt8(ascii: "\"") {
                index = position + 1
                return (start, position, escapes)
            }
            if byte == UInt8(ascii: "\\") {
                if escapes != .other {
                    escapes = position + 1 < count && isOneCharacterEscape(base[position + 1]) ? .oneCharacter : .other
                }
                position += 2
                continue
            }
            if byte < 0x20 {
                index = position
                throw error("control character in a string")
            }
            position += 1
        }
        index = count
        throw JSONError(offset: start - 1, "unterminated string")
    }

    private mutating func readKey() throws -> JSONKey {
        let (start, end, escapes) = try scanString()
        let raw = UnsafeBufferPointer(rebasing: bytes[start..<end])
        if escapes != .none {
            // Checked here, so that comparing and describing the key cannot fail.
            var nowhere = DiscardedBytes()
            try decodeEscapes(raw, at: start, into: &nowhere)
        }
        return JSONKey(raw: raw, escaped: escapes != .none)
    }

    /// Moves past a number (RFC 8259 grammar); returns its end and whether it is an integer.
    private mutating func scanNumber() throws -> (end: Int, integral: Bool) {
        let start = index
        var integral = true
        if consume(UInt8(ascii: "-")) {}
        guard index < bytes.count, isDigit(bytes[index]) else { throw JSONError(offset: start, "expected a number") }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
        } else {
            while index < bytes.count && isDigit(bytes[index]) { index += 1 }
        }
        if consume(UInt8(ascii: ".")) {
            integral = false
            guard index < bytes.count, isDigit(bytes[index]) else { throw JSONError(offset: start, "expected digits after '.'") }
            while index < bytes.count && isDigit(bytes[index]) { index += 1 }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            integral = false
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard index < bytes.count, isDigit(bytes[index]) else { throw JSONError(offset: start, "expected digits in the exponent") }
            while index < bytes.count && isDigit(bytes[index]) { index += 1 }
        }
        return (index, integral)
    }

    private func unescape(_ raw: UnsafeBufferPointer<UInt8>, at offset: Int) throws -> String {
        String(decoding: try unescapedBytes(raw, at: offset), as: UTF8.self)
    }
}

/// A string's contents with its escapes decoded.
func unescapedBytes(_ raw: UnsafeBufferPointer<UInt8>, at offset: Int) throws -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(raw.count)
    try decodeEscapes(raw, at: offset, into: &out)
    return out
}

/// Decodes a string's contents into `output`, refusing what RFC 8259 does not allow.
private func decodeEscapes<Output: UnescapedBytes>(_ raw: UnsafeBufferPointer<UInt8>, at offset: Int,
                                                   into output: inout Output) throws {
    var position = 0
    while position < raw.count {
        let byte = raw[position]
        guard byte == UInt8(ascii: "\\") else {
            output.append(byte)
            position += 1
            continue
        }
        guard position + 1 < raw.count else { throw JSONError(offset: offset + position, "unfinished escape") }
        let code = raw[position + 1]
        position += 2
        switch code {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): output.append(code)
        case UInt8(ascii: "b"): output.append(0x08)
        case UInt8(ascii: "f"): output.append(0x0C)
        case UInt8(ascii: "n"): output.append(0x0A)
        case UInt8(ascii: "r"): output.append(0x0D)
        case UInt8(ascii: "t"): output.append(0x09)
        case UInt8(ascii: "u"):
            var scalar = try hex4(raw, position, offset)
            position += 4
            if scalar >= 0xD800 && scalar < 0xDC00 {
                // A high surrogate must be followed by an escaped low one.
                guard position + 6 <= raw.count, raw[position] == UInt8(ascii: "\\"), raw[position + 1] == UInt8(ascii: "u") else {
                    throw JSONError(offset: offset + position, "unpaired surrogate in \\u escape")
                }
                let low = try hex4(raw, position + 2, offset)
                guard low >= 0xDC00 && low < 0xE000 else { throw JSONError(offset: offset + position, "unpaired surrogate in \\u escape") }
                position += 6
                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
            } else if scalar >= 0xDC00 && scalar < 0xE000 {
                throw JSONError(offset: offset + position, "unpaired surrogate in \\u escape")
            }
            // Surrogates are handled above, so every value left is a scalar.
            UTF8.encode(Unicode.Scalar(scalar)!) { output.append($0) }
        default:
            throw JSONError(offset: offset + position - 2, "invalid escape \\\(describe(code))")
        }
    }
}

private func hex4(_ raw: UnsafeBufferPointer<UInt8>, _ position: Int, _ offset: Int) throws -> UInt32 {
    guard position + 4 <= raw.count else { throw JSONError(offset: offset + position, "short \\u escape") }
    var value: UInt32 = 0
    for i in 0..<4 {
        let byte = raw[position + i]
        let digit: UInt32
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
        default: throw JSONError(offset: offset + position, "invalid \\u escape")
        }
        value = value << 4 | digit
    }
    return value
}

extension JSONReader {
    private func error(_ message: String) -> JSONError {
        JSONError(offset: index, message)
    }
}

/// An object member's name, compared as bytes without making a String.
///
/// Only a view of the document, valid while the member is read: a key with escapes (which
/// no Kubernetes object has) is decoded when it is compared or described, so a key costs
/// nothing to make or drop.
public struct JSONKey: CustomStringConvertible {
    @usableFromInline let raw: UnsafeBufferPointer<UInt8>
    /// Whether `raw` holds escapes; they were checked when the key was read.
    @usableFromInline let escaped: Bool

    init(raw: UnsafeBufferPointer<UInt8>, escaped: Bool) {
        self.raw = raw
        self.escaped = escaped
    }

    /// Inlined where keys are matched, so a chain of `key == "..."` compares lengths that
    /// are constants before it compares any byte.
    @inlinable @inline(__always)
    public static func == (key: JSONKey, name: StaticString) -> Bool {
        guard !key.escaped else { return key.unescaped == Array(name.description.utf8) }
        let raw = key.raw
        return name.withUTF8Buffer { expected in
            guard expected.count == raw.count else { return false }
            return raw.isEmpty || memcmp(expected.baseAddress!, raw.baseAddress!, raw.count) == 0
        }
    }

    @usableFromInline var unescaped: [UInt8] {
        // Cannot throw: readKey checked the escapes.
        (try? unescapedBytes(raw, at: 0)) ?? []
    }

    public var description: String {
        escaped ? String(decoding: unescaped, as: UTF8.self) : String(decoding: raw, as: UTF8.self)
    }
}

/// Where ``JSONReader`` puts the bytes of a string it decodes: a buffer for a value that is
/// read, nowhere for one that is skipped.
private protocol UnescapedBytes {
    mutating func append(_ byte: UInt8)
}

extension [UInt8]: UnescapedBytes {}

private struct DiscardedBytes: UnescapedBytes {
    func append(_ byte: UInt8) {}
}

/// The high bit of each byte of `word` that is a quote, a backslash or a control character
/// (what a JSON string cannot hold unescaped; the reader and the writer both look for them),
/// by the classic "has a zero byte" and "has a byte below n" tests. A byte's bit is set
/// wrongly only by a borrow from a lower byte that matched, so the lowest set bit (the first
/// byte of a little-endian word) is always a true match.
@inline(__always)
func stringSpecialBytes(_ word: UInt64) -> UInt64 {
    let ones: UInt64 = 0x0101_0101_0101_0101
    let quote = word ^ (ones &* UInt64(UInt8(ascii: "\"")))
    let backslash = word ^ (ones &* UInt64(UInt8(ascii: "\\")))
    let control = (word &- ones &* 0x20) & ~word
    let quoteOrBackslash = ((quote &- ones) & ~quote) | ((backslash &- ones) & ~backslash)
    return (control | quoteOrBackslash) & (ones &* 0x80)
}

/// The escapes of one character after the backslash: \" \\ \/ \b \f \n \r \t.
@inline(__always)
private func isOneCharacterEscape(_ byte: UInt8) -> Bool {
    switch byte {
    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
         UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"): true
    default: false
    }
}

@inline(__always)
private func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

private func describe(_ byte: UInt8) -> String {
    byte >= 0x20 && byte < 0x7F ? "'\(Character(Unicode.Scalar(byte)))'" : "byte 0x\(String(byte, radix: 16))"
}
