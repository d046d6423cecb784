extension [UInt8] {
    /// Appends a String's UTF-8 from its contiguous bytes: appending its UTF-8 view goes
    /// element by element, which cost the response writers more than the bytes themselves.
    public mutating func appendUTF8(_ text: String) {
        var text = text
        text.withUTF8 { append(contentsOf: $0) }
    }
}
