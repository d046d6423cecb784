import CertgateJSON
#if canImport(Glibc)
import Glibc
#endif

/// The longest duration Go represents (time.Duration is int64 nanoseconds, about 292
/// years); Go's ParseDuration refuses anything longer, and so does this.
public let maxGoDurationSeconds = Double(Int64.max) / 1e9

/// Parses Go duration strings as Kubernetes flags and cert-manager write them: "2160h",
/// "90m", "1h30m", "500ms", "1.5h". Returns seconds, or nil if it is not a Go duration
/// or is longer than Go can hold.
public func parseGoDuration(_ text: String) -> Double? {
    var text = text
    return text.withUTF8 { bytes in
        guard !bytes.isEmpty else { return nil }
        if bytes.count == 1 && bytes[0] == UInt8(ascii: "0") { return 0 }
        func isNumberByte(_ byte: UInt8) -> Bool { (byte >= 0x30 && byte <= 0x39) || byte == UInt8(ascii: ".") }
        var total = 0.0
        var position = 0
        while position < bytes.count {
            let numberStart = position
            while position < bytes.count && isNumberByte(bytes[position]) { position += 1 }
            guard position > numberStart,
                  let value = durationNumber(UnsafeBufferPointer(rebasing: bytes[numberStart..<position]))
            else { return nil }
            let unitStart = position
            while position < bytes.count && !isNumberByte(bytes[position]) { position += 1 }
            guard let scale = goDurationUnitSeconds(UnsafeBufferPointer(rebasing: bytes[unitStart..<position])) else { return nil }
            total += value * scale
            // Checked on every term: "99999999999999999999h" is finite as a Double but no
            // duration, and one of 10^400 digits is not even finite.
            guard total <= maxGoDurationSeconds else { return nil }
        }
        return total
    }
}

/// The number before a duration's unit. Whole numbers of up to 15 digits, which nearly
/// every Pki writes ("2160h"), are exact as Double and summed as integers; anything else
/// goes through Double's own parser.
private func durationNumber(_ bytes: UnsafeBufferPointer<UInt8>) -> Double? {
    if bytes.count <= 15 {
        var whole = 0
        for byte in bytes {
            guard byte >= 0x30 && byte <= 0x39 else { return Double(String(decoding: bytes, as: UTF8.self)) }
            whole = whole * 10 + Int(byte - 0x30)
        }
        return Double(whole)
    }
    return Double(String(decoding: bytes, as: UTF8.self))
}

/// Seconds in one of Go's duration units: ns, us (or µs), ms, s, m, h.
private func goDurationUnitSeconds(_ unit: UnsafeBufferPointer<UInt8>) -> Double? {
    switch unit.count {
    case 1:
        switch unit[0] {
        case UInt8(ascii: "s"): return 1
        case UInt8(ascii: "m"): return 60
        case UInt8(ascii: "h"): return 3600
        default: return nil
        }
    case 2 where unit[1] == UInt8(ascii: "s"):
        switch unit[0] {
        case UInt8(ascii: "n"): return 1e-9
        case UInt8(ascii: "u"): return 1e-6
        case UInt8(ascii: "m"): return 1e-3
        default: return nil
        }
    case 3 where unit[0] == 0xC2 && unit[1] == 0xB5 && unit[2] == UInt8(ascii: "s"):  // µs
        return 1e-6
    default:
        return nil
    }
}

/// Seconds as a Go duration in whole hours, minutes and seconds ("2160h", "1h30m", "90s").
public func formatDuration(_ seconds: Double) -> String {
    // Every duration that parsed is in range; anything else is shown, not trapped on.
    guard seconds.isFinite, abs(seconds) <= maxGoDurationSeconds else { return "\(seconds)s" }
    var rest = Int(seconds.rounded())
    if rest == 0 { return "0s" }
    var text = ""
    if rest >= 3600 { text += "\(rest / 3600)h"; rest %= 3600 }
    if rest >= 60 { text += "\(rest / 60)m"; rest %= 60 }
    if rest > 0 { text += "\(rest)s" }
    return text
}

func formatIPAddress(_ bytes: [UInt8]) -> String {
    var buffer = [CChar](repeating: 0, count: 64)
    let family = bytes.count == 4 ? AF_INET : AF_INET6
    _ = bytes.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &buffer, socklen_t(buffer.count)) }
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// RFC 1123 host name, with `*` allowed only as the whole leftmost label.
public func isValidDNSName(_ name: String) -> Bool { dnsNameProblem(name) == nil }

/// What is wrong with `name` as a certificate's DNS name, worded as the fix (which label,
/// which character, how long), or nil when it is a valid RFC 1123 host name (`*` allowed
/// only as the whole leftmost label).
public func dnsNameProblem(_ name: String) -> String? {
    var name = name
    return name.withUTF8 { bytes in
        isPlainHostName(bytes) ? nil : hostNameProblem(bytes)
    }
}

/// One pass over a name without wildcards: 1 to 253 bytes, labels of 1 to 63 letters,
/// digits and '-' that neither start nor end with '-'. What it refuses is worded (or, for a
/// wildcard, accepted) by ``hostNameProblem(_:)``.
func isPlainHostName(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
    guard !bytes.isEmpty, bytes.count <= 253 else { return false }
    var labelLength = 0
    var previous = UInt8(ascii: ".")
    for byte in bytes {
        if byte == UInt8(ascii: ".") {
            guard labelLength > 0, previous != UInt8(ascii: "-") else { return false }
            labelLength = 0
        } else {
            guard isAlphanumeric(byte) || (byte == UInt8(ascii: "-") && labelLength > 0) else { return false }
            labelLength += 1
            guard labelLength <= 63 else { return false }
        }
        previous = byte
    }
    return labelLength > 0 && previous != UInt8(ascii: "-")
}

func hostNameProblem(_ bytes: UnsafeBufferPointer<UInt8>) -> String? {
    if bytes.isEmpty { return "it is empty" }
    if bytes.count > 253 { return "it is \(bytes.count) bytes long; a DNS name has at most 253" }
    // Label by label without copying: a message is made only for a name that has a problem.
    let labelCount = bytes.reduce(1) { $1 == UInt8(ascii: ".") ? $0 + 1 : $0 }
    var labelStart = 0
    for index in 0..<labelCount {
        let labelEnd = bytes[labelStart...].firstIndex(of: UInt8(ascii: ".")) ?? bytes.count
        let label = UnsafeBufferPointer(rebasing: bytes[labelStart..<labelEnd])
        labelStart = labelEnd + 1
        if label.isEmpty {
            return index == 0 ? "it starts with '.'" : index == labelCount - 1 ? "it ends with '.'; leave the final dot out"
                : "it has an empty label (two dots in a row)"
        }
        if label.contains(UInt8(ascii: "*")) {
            if index != 0 || label.count != 1 {
                let rest = bytes.split(separator: UInt8(ascii: "."))
                    .filter { !$0.contains(UInt8(ascii: "*")) }.map { String(decoding: $0, as: UTF8.self) }
                return "'*' may stand only as the whole leftmost label, as in \"*.\(rest.isEmpty ? "app1.svc" : rest.joined(separator: "."))\""
            }
            if labelCount == 1 { return "a wildcard needs a domain under it, as in \"*.app1.svc\"" }
            continue
        }
        if label.count > 63 {
            return "its label \"\(String(decoding: label, as: UTF8.self).prefix(20))...\" is \(label.count) bytes long; a label has at most 63"
        }
        if !label.allSatisfy({ isAlphanumeric($0) || $0 == UInt8(ascii: "-") }) {
            let text = String(decoding: label, as: UTF8.self)
            let bad = text.unicodeScalars.first { !($0.isASCII && (isAlphanumeric(UInt8($0.value)) || $0 == "-")) }!
            return "its label \"\(text)\" has \(describe(bad)); labels hold only letters, digits and '-'"
        }
        if label.first == UInt8(ascii: "-") || label.last == UInt8(ascii: "-") {
            return "its label \"\(String(decoding: label, as: UTF8.self))\" \(label.first == UInt8(ascii: "-") ? "starts" : "ends") "
                + "with '-'; a label starts and ends with a letter or digit"
        }
    }
    return nil
}

/// A character as a message shows it: 'x', or its code point when it would not print.
private func describe(_ scalar: Unicode.Scalar) -> String {
    scalar.properties.isWhitespace || scalar.value < 0x20 || scalar.value == 0x7F
        ? "U+\(String(scalar.value, radix: 16, uppercase: true))" : "'\(scalar)'"
}

/// A Kubernetes object name (DNS-1123 subdomain): lower-case letters, digits, '-' and '.',
/// starting and ending with a letter or digit, at most 253 characters.
public func isValidObjectName(_ name: String) -> Bool {
    let bytes = Array(name.utf8)
    guard let first = bytes.first, let last = bytes.last, bytes.count <= 253 else { return false }
    let lowerAlphanumeric = { (byte: UInt8) in (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x30 && byte <= 0x39) }
    return lowerAlphanumeric(first) && lowerAlphanumeric(last)
        && bytes.allSatisfy { lowerAlphanumeric($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".") }
}

/// Why `key` is not a Kubernetes label or annotation key ([prefix/]name: a DNS subdomain of at
/// most 253 characters, then a name of at most 63 of letters, digits, '-', '_' and '.',
/// starting and ending with a letter or digit), or nil when it is one.
public func qualifiedNameProblem(_ key: String) -> String? {
    let parts = key.split(separator: "/", omittingEmptySubsequences: false)
    guard parts.count <= 2 else { return "it has more than one '/'" }
    if parts.count == 2 {
        let prefix = String(parts[0])
        if prefix.isEmpty { return "the prefix before '/' is empty" }
        if !isValidObjectName(prefix) {
            return "the prefix \"\(prefix)\" is not a DNS subdomain (lower-case letters, digits, '-' and '.', at most 253 characters)"
        }
    }
    let name = String(parts[parts.count - 1])
    if name.isEmpty { return "the name is empty" }
    return labelValueProblem(name).map { "the name \"\(name)\" \($0)" }
}

/// Why `value` is not a label value (empty, or at most 63 letters, digits, '-', '_' and '.',
/// starting and ending with a letter or digit), or nil when it is one.
public func labelValueProblem(_ value: String) -> String? {
    let bytes = Array(value.utf8)
    guard let first = bytes.first, let last = bytes.last else { return nil }
    if bytes.count > 63 { return "is \(bytes.count) characters, more than 63" }
    guard isAlphanumeric(first), isAlphanumeric(last) else { return "must start and end with a letter or digit" }
    guard bytes.allSatisfy({ isAlphanumeric($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") }) else {
        return "may hold only letters, digits, '-', '_' and '.'"
    }
    return nil
}

/// Why `text` is not an absolute URI as a certificate may carry one (RFC 3986: a scheme of a
/// letter then letters, digits, '+', '-' or '.', a ':', then printable ASCII without spaces;
/// at most 2,048 characters), or nil when it is one.
public func uriProblem(_ text: String) -> String? {
    let bytes = Array(text.utf8)
    guard bytes.count <= 2048 else { return "it is \(bytes.count) characters, more than 2048" }
    guard let colon = bytes.firstIndex(of: UInt8(ascii: ":")), colon > 0 else {
        return "it has no scheme; write it in full, such as spiffe://cluster.local/ns/app1/sa/app1"
    }
    let scheme = bytes[..<colon]
    guard scheme.first.map(isLetter) == true, scheme.allSatisfy({ isAlphanumeric($0) || $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "-")
        || $0 == UInt8(ascii: ".") }) else { return "its scheme \"\(String(decoding: scheme, as: UTF8.self))\" is not a URI scheme" }
    guard colon + 1 < bytes.count else { return "it is only a scheme" }
    if let bad = bytes.first(where: { $0 <= 0x20 || $0 >= 0x7F || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "<")
        || $0 == UInt8(ascii: ">") || $0 == UInt8(ascii: "\\") || $0 == UInt8(ascii: "`") }) {
        return bad == 0x20 ? "it has a space; percent-encode it as %20" : "it has a character a URI may not hold (percent-encode it)"
    }
    return nil
}

/// Why `text` is not an email address a certificate may carry (local@domain, ASCII, the
/// domain a DNS name), or nil when it is one.
public func emailAddressProblem(_ text: String) -> String? {
    let parts = text.split(separator: "@", omittingEmptySubsequences: false)
    guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else { return "write it as name@domain" }
    let local = Array(parts[0].utf8)
    guard local.count <= 64 else { return "the part before '@' is \(local.count) characters, more than 64" }
    let allowed = Set("!#$%&'*+-/=?^_`{|}~.".utf8)
    guard local.allSatisfy({ isAlphanumeric($0) || allowed.contains($0) }) else {
        return "the part before '@' may hold only letters, digits and !#$%&'*+-/=?^_`{|}~."
    }
    if let problem = dnsNameProblem(String(parts[1])) { return "the domain \"\(parts[1])\": \(problem)" }
    return nil
}

private func isLetter(_ byte: UInt8) -> Bool {
    (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x41 && byte <= 0x5A)
}

/// A key of a Secret's or ConfigMap's data: letters, digits, '-', '_' and '.', at most 253.
public func isValidSecretDataKey(_ key: String) -> Bool {
    let bytes = Array(key.utf8)
    return !bytes.isEmpty && bytes.count <= 253 && key != "." && key != ".."
        && bytes.allSatisfy { isAlphanumeric($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") }
}

private func isAlphanumeric(_ byte: UInt8) -> Bool {
    (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x30 && byte <= 0x39)
}

/// Levenshtein distance between two strings, by Unicode scalar.
public func editDistance(_ a: String, _ b: String) -> Int {
    var a = a, b = b
    // ASCII (nearly every name compared) is one scalar per byte: compare the bytes in place.
    let ascii = a.withUTF8 { left in b.withUTF8 { right in
        left.allSatisfy { $0 < 0x80 } && right.allSatisfy { $0 < 0x80 } ? levenshtein(left, right) : nil
    } }
    return ascii ?? levenshtein(Array(a.unicodeScalars), Array(b.unicodeScalars))
}

/// The edit distance of two sequences, keeping one row of the table.
private func levenshtein<Elements: RandomAccessCollection>(_ left: Elements, _ right: Elements) -> Int
where Elements.Element: Equatable, Elements.Index == Int {
    if left.isEmpty { return right.count }
    if right.isEmpty { return left.count }
    return withUnsafeTemporaryAllocation(of: Int.self, capacity: right.count + 1) { row in
        for j in 0...right.count { row[j] = j }
        for i in 1...left.count {
            var diagonal = row[0]
            row[0] = i
            let character = left[left.startIndex + i - 1]
            for j in 1...right.count {
                let above = row[j]
                let cost = character == right[right.startIndex + j - 1] ? 0 : 1
                row[j] = min(above + 1, row[j - 1] + 1, diagonal + cost)
                diagonal = above
            }
        }
        return row[right.count]
    }
}

/// Whether `name` ends with `suffix`, letters compared without case as DNS compares them,
/// and without lower-casing copies of either (this runs for every name of every review).
public func hasSuffixIgnoringASCIICase(_ name: String, _ suffix: String) -> Bool {
    // Over contiguous bytes: zipping the two UTF-8 views cost more than the rest of the rules.
    var name = name, suffix = suffix
    return name.withUTF8 { nameBytes in
        suffix.withUTF8 { suffixBytes in
            guard suffixBytes.count <= nameBytes.count else { return false }
            let start = nameBytes.count - suffixBytes.count
            for index in 0..<suffixBytes.count where asciiLowercased(nameBytes[start + index]) != asciiLowercased(suffixBytes[index]) {
                return false
            }
            return true
        }
    }
}

@inline(__always)
private func asciiLowercased(_ byte: UInt8) -> UInt8 {
    byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
}

/// The candidate closest to `value` within a small edit distance (at most 2, and less than
/// half of the value's length), for "did you mean" hints.
public func closestMatch(to value: String, among candidates: [String]) -> String? {
    var value = value
    let ascii = value.withUTF8 { $0.allSatisfy { $0 < 0x80 } }
    let limit = min(2, max(1, (ascii ? value.utf8.count : value.count) / 2))
    let lowered = value.lowercasedUnlessLowercaseASCII()
    var best: (name: String, distance: Int)?
    for candidate in candidates {
        let distance = editDistance(lowered, candidate.lowercasedUnlessLowercaseASCII())
        if distance <= limit, distance < (best?.distance ?? .max) { best = (candidate, distance) }
    }
    return best?.name
}

/// Go's fmt rendering of a string slice, as kubectl users know it: [app1 app2].
public func bracketed(_ values: [String]) -> String {
    let text: MessageText = "\(bracketed: values)"
    return text.string
}
