/// Writes compact JSON into a byte buffer, with commas and quoting handled.
///
///     var writer = JSONWriter()
///     writer.object {
///         $0.member("uid", string: uid)
///         $0.member("allowed", bool: false)
///     }
///     let body = writer.bytes
public struct JSONWriter {
    public private(set) var bytes: [UInt8] = []
    private var needsComma = false

    public init(capacity: Int = 256) {
        bytes.reserveCapacity(capacity)
    }

    public mutating func object(_ members: (inout JSONWriter) -> Void) {
        container(UInt8(ascii: "{"), UInt8(ascii: "}"), members)
    }

    public mutating func array(_ elements: (inout JSONWriter) -> Void) {
        container(UInt8(ascii: "["), UInt8(ascii: "]"), elements)
    }

    private mutating func container(_ open: UInt8, _ close: UInt8, _ contents: (inout JSONWriter) -> Void) {
        separate()
        bytes.append(open)
        needsComma = false
        contents(&self)
        bytes.append(close)
        needsComma = true
    }

    /// Writes a member name; the value written next belongs to it.
    public mutating func key(_ name: String) {
        separate()
        appendQuoted(name)
        bytes.append(UInt8(ascii: ":"))
        needsComma = false
    }

    public mutating func string(_ value: String) {
        separate()
        appendQuoted(value)
        needsComma = true
    }

    public mutating func int(_ value: Int) {
        separate()
        appendRaw(String(value))
        needsComma = true
    }

    /// A number as it was written elsewhere (a YAML float): `text` must be valid JSON number syntax.
    public mutating func number(_ text: String) {
        separate()
        appendRaw(text)
        needsComma = true
    }

    public mutating func bool(_ value: Bool) {
        separate()
        appendRaw(value ? "true" : "false")
        needsComma = true
    }

    public mutating func null() {
        separate()
        appendRaw("null")
        needsComma = true
    }

    public mutating func member(_ name: String, string value: String) { key(name); string(value) }
    public mutating func member(_ name: String, int value: Int) { key(name); int(value) }
    public mutating func member(_ name: String, bool value: Bool) { key(name); bool(value) }
    public mutating func member(_ name: String, strings values: [String]) {
        key(name)
        array { writer in for value in values { writer.string(value) } }
    }

    @inline(__always)
    private mutating func separate() {
        if needsComma { bytes.append(UInt8(ascii: ",")) }
    }

    /// Appends text that needs no escaping.
    private mutating func appendRaw(_ text: String) {
        bytes.appendUTF8(text)
    }

    /// Quotes `text`, escaping what RFC 8259 requires; other UTF-8 passes through. Runs
    /// without escapes (nearly all of a message) are copied at once.
    private mutating func appendQuoted(_ text: String) {
        bytes.append(UInt8(ascii: "\""))
        appendEscaped(text)
        bytes.append(UInt8(ascii: "\""))
    }

    private mutating func appendEscaped(_ text: String) {
        var text = text
        text.withUTF8 { utf8 in
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: JSONText.escapedBound(utf8.count)) { buffer in
                let written = writeEscaped(utf8, to: buffer.baseAddress!)
                bytes.append(contentsOf: UnsafeBufferPointer(rebasing: buffer[..<written]))
            }
        }
    }
}

/// JSON text written straight into memory reserved for it: for the answers written on
/// every request, where appending piece by piece to a growing array (``JSONWriter``) cost
/// more than deciding what to answer. The writer runs twice, first only adding up how
/// long each piece can be (escaping at most sextuples text), then writing into one
/// allocation of that size.
///
///     let body = [UInt8](jsonText: { text in
///         text.literal(#"{"uid":"#)
///         text.quoted(uid)
///         text.literal("}")
///     })
public struct JSONText: ~Copyable {
    /// Nil while measuring.
    private let base: UnsafeMutablePointer<UInt8>?
    private let capacity: Int
    /// Bytes written; while measuring, the most that writing could take.
    public private(set) var count = 0

    fileprivate init(base: UnsafeMutablePointer<UInt8>?, capacity: Int) {
        self.base = base
        self.capacity = capacity
    }

    /// The most bytes `count` bytes of text take once escaped: `\u00XX` for a control character.
    public static func escapedBound(_ count: Int) -> Int { 6 * count }

    /// Text that needs no escaping: punctuation and member names.
    public mutating func literal(_ text: StaticString) {
        let length = text.utf8CodeUnitCount
        if let base = reserve(length) {
            (base + count).update(from: text.utf8Start, count: length)
        }
        count += length
    }

    /// A JSON string of `text`, quoted and escaped.
    public mutating func quoted(_ text: String) {
        var text = text
        text.withUTF8 { quoted(utf8: $0) }
    }

    /// A JSON string of UTF-8 bytes, quoted and escaped.
    public mutating func quoted(utf8 bytes: [UInt8]) {
        bytes.withUnsafeBufferPointer { quoted(utf8: $0) }
    }

    public mutating func quoted(utf8 bytes: UnsafeBufferPointer<UInt8>) {
        let bound = JSONText.escapedBound(bytes.count) + 2
        guard let base = reserve(bound) else {
            count += bound
            return
        }
        base[count] = UInt8(ascii: "\"")
        let written = writeEscaped(bytes, to: base + count + 1)
        base[count + 1 + written] = UInt8(ascii: "\"")
        count += written + 2
    }

    public mutating func int(_ value: Int) {
        // 19 digits and a sign.
        guard let base = reserve(20) else {
            count += 20
            return
        }
        if value < 0 {
            base[count] = UInt8(ascii: "-")
            count += 1
        }
        var magnitude = value.magnitude
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)
        let length = withUnsafeMutableBytes(of: &digits) { scratch in
            var end = scratch.count
            repeat {
                end -= 1
                scratch[end] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
            } while magnitude > 0
            (base + count).update(from: scratch.baseAddress!.assumingMemoryBound(to: UInt8.self) + end, count: scratch.count - end)
            return scratch.count - end
        }
        count += length
    }

    public mutating func bool(_ value: Bool) {
        value ? literal("true") : literal("false")
    }

    /// Where `length` more bytes go, or nil while measuring.
    private func reserve(_ length: Int) -> UnsafeMutablePointer<UInt8>? {
        guard let base else { return nil }
        precondition(count + length <= capacity, "JSONText wrote more than it measured")
        return base
    }
}

extension [UInt8] {
    /// JSON text written by `write`, in one allocation of the size it measured.
    public init(jsonText write: (inout JSONText) -> Void) {
        var measure = JSONText(base: nil, capacity: 0)
        write(&measure)
        let capacity = measure.count
        self.init(unsafeUninitializedCapacity: capacity) { buffer, initialized in
            var text = JSONText(base: buffer.baseAddress, capacity: capacity)
            write(&text)
            initialized = text.count
        }
    }
}

/// Copies `text` to `output`, escaping what RFC 8259 requires (the quote, the backslash
/// and control characters; other UTF-8 passes through); returns the bytes written, at
/// most ``JSONText/escapedBound(_:)``. Runs without escapes, nearly all of a message, are
/// copied eight bytes at a time.
func writeEscaped(_ text: UnsafeBufferPointer<UInt8>, to output: UnsafeMutablePointer<UInt8>) -> Int {
    guard let input = text.baseAddress else { return 0 }
    var read = 0
    var written = 0
    while read < text.count {
        if text.count - read >= 8 {
            let word = UnsafeRawPointer(input + read).loadUnaligned(as: UInt64.self)
            let matches = stringSpecialBytes(UInt64(littleEndian: word))
            if matches == 0 {
                UnsafeMutableRawPointer(output + written).storeBytes(of: word, as: UInt64.self)
                read += 8
                written += 8
                continue
            }
            let plain = matches.trailingZeroBitCount / 8
            (output + written).update(from: input + read, count: plain)
            read += plain
            written += plain
        }
        let byte = input[read]
        read += 1
        guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else {
            output[written] = byte
            written += 1
            continue
        }
        output[written] = UInt8(ascii: "\\")
        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"): output[written + 1] = byte; written += 2
        case 0x0A: output[written + 1] = UInt8(ascii: "n"); written += 2
        case 0x0D: output[written + 1] = UInt8(ascii: "r"); written += 2
        case 0x09: output[written + 1] = UInt8(ascii: "t"); written += 2
        default:
            let hex: StaticString = "0123456789abcdef"
            output[written + 1] = UInt8(ascii: "u")
            output[written + 2] = UInt8(ascii: "0")
            output[written + 3] = UInt8(ascii: "0")
            output[written + 4] = hex.utf8Start[Int(byte >> 4)]
            output[written + 5] = hex.utf8Start[Int(byte & 0xF)]
            written += 6
        }
    }
    return written
}
