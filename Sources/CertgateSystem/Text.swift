extension StringProtocol {
    /// The text without leading and trailing whitespace and newlines (a token file's final
    /// newline, the spaces of "a, b"): what Foundation's `trimmingCharacters(in:)` does,
    /// without linking Foundation.
    public func trimmingWhitespace() -> String {
        var slice = self[...]
        while slice.first?.isWhitespace == true { slice = slice.dropFirst() }
        while slice.last?.isWhitespace == true { slice = slice.dropLast() }
        return String(slice)
    }
}
