extension [UInt8] {
    /// Appends a String's UTF-8 from its contiguous bytes: appending its UTF-8 view goes
    /// element by element, which cost the response writers more than the bytes themselves.
    public mutating func appendUTF8(_ text: String) {
        var text = text
        text.withUTF8 { append(contentsOf: $0) }
    }
}

extension String {
    /// Lower-cased; text that is lower-case ASCII already (nearly every header name and
    /// policy name) is returned as it is, without a case mapping.
    public func lowercasedUnlessLowercaseASCII() -> String {
        var text = self
        let needsMapping = text.withUTF8 { bytes in
            bytes.contains { ($0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z")) || $0 >= 0x80 }
        }
        return needsMapping ? text.lowercased() : text
    }
}
