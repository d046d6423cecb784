import CertgateJSON

/// A rule's field path or message, built from a string interpolation straight into UTF-8
/// bytes and made a String once. Swift's default interpolation grows a String piece by
/// piece, and the two messages of a typical denial cost more than all of the rules.
struct MessageText: ExpressibleByStringInterpolation {
    private(set) var bytes: [UInt8]

    init(stringLiteral literal: String) {
        bytes = []
        bytes.appendUTF8(literal)
    }

    init(stringInterpolation: Interpolation) {
        bytes = stringInterpolation.bytes
    }

    var string: String { String(decoding: bytes, as: UTF8.self) }

    /// Long messages are written as literals joined over several lines.
    static func + (lhs: consuming MessageText, rhs: MessageText) -> MessageText {
        var joined = lhs
        joined.bytes += rhs.bytes
        return joined
    }

    static func + (lhs: consuming MessageText, rhs: String) -> MessageText {
        var joined = lhs
        joined.bytes.appendUTF8(rhs)
        return joined
    }

    struct Interpolation: StringInterpolationProtocol {
        fileprivate var bytes: [UInt8] = []

        init(literalCapacity: Int, interpolationCount: Int) {
            bytes.reserveCapacity(literalCapacity + 24 * interpolationCount)
        }

        mutating func appendLiteral(_ literal: String) { bytes.appendUTF8(literal) }
        mutating func appendInterpolation(_ value: String) { bytes.appendUTF8(value) }
        mutating func appendInterpolation(_ value: Int) { bytes.appendUTF8(String(value)) }
        mutating func appendInterpolation(_ value: some CustomStringConvertible) { bytes.appendUTF8(value.description) }

        /// `"value"`, or `(none)` for nil.
        mutating func appendInterpolation(quoted value: String?) {
            guard let value else { return appendLiteral("(none)") }
            bytes.append(UInt8(ascii: "\""))
            bytes.appendUTF8(value)
            bytes.append(UInt8(ascii: "\""))
        }

        /// A list as ``bracketed(_:)`` shows it, written in place.
        mutating func appendInterpolation(bracketed values: [String]) {
            bytes.append(UInt8(ascii: "["))
            for (index, value) in values.enumerated() {
                if index > 0 { bytes.append(UInt8(ascii: " ")) }
                bytes.appendUTF8(value)
            }
            bytes.append(UInt8(ascii: "]"))
        }
    }
}
