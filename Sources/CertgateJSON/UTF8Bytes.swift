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

    /// Where `text` first occurs, compared as UTF-8: the standard library's firstRange(of:)
    /// and contains(_:) for strings come from _StringProcessing, whose regex engine a
    /// substring search alone linked into the server.
    public func rangeOfFirst(_ text: String) -> Range<String.Index>? {
        let haystack = utf8
        guard let first = text.utf8.first else { return startIndex..<startIndex }
        var start = haystack.startIndex
        while let candidate = haystack[start...].firstIndex(of: first) {
            if haystack[candidate...].starts(with: text.utf8) {
                return candidate..<haystack.index(candidate, offsetBy: text.utf8.count)
            }
            start = haystack.index(after: candidate)
        }
        return nil
    }
}
