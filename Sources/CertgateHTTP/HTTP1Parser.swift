/// Limits applied while reading requests.
public struct HTTPLimits: Sendable {
    /// Bytes of request line plus header fields (HTTP/1.1), or of the decoded header list (HTTP/2).
    public var maxHeaderBytes: Int = 64 * 1024
    /// Bytes of request body; controller-runtime's webhook server uses 7 MiB.
    public var maxBodyBytes: Int = 7 * 1024 * 1024

    public init(maxHeaderBytes: Int = 64 * 1024, maxBodyBytes: Int = 7 * 1024 * 1024) {
        self.maxHeaderBytes = maxHeaderBytes
        self.maxBodyBytes = maxBodyBytes
    }
}

/// A request the parser rejects, with the status to answer and why.
package struct HTTPParseError: Error, Equatable {
    package let status: Int
    package let message: String
}

/// Reads HTTP/1.1 requests out of a byte stream, one at a time, without copying the head
/// more than once. Feed it with ``append(_:)`` and call ``next()`` until it returns nil.
package struct HTTP1Parser {
    /// A parsed request head, waiting for (or with) its body.
    package struct Head {
        package var method: String
        package var path: String
        package var query: String?
        package var version: HTTPVersion
        package var headers: HTTPHeaders
        package var framing: Framing
        package var expectsContinue: Bool
        package var keepAlive: Bool
    }

    package enum Framing: Equatable {
        case length(Int)
        case chunked
    }

    package enum Event {
        /// A head was read; its body may still be on its way.
        case head(Head)
        /// The body of the current request is complete.
        case body([UInt8])
    }

    private enum State {
        case head
        case fixedBody(Int)
        case chunked
    }

    let limits: HTTPLimits
    private(set) var buffer: [UInt8] = []
    private var offset = 0
    private var state = State.head
    /// Where the search for the end of the head resumes, so a trickled head is scanned once.
    private var scanFrom = 0
    private var chunked = ChunkedDecoder(maxBodyBytes: 0, maxTrailerBytes: 0)
    private var body: [UInt8] = []

    package init(limits: HTTPLimits) {
        self.limits = limits
    }

    /// Whether the parser holds part of a request (head or body) not yet complete.
    package var isMidRequest: Bool {
        if case .head = state { return offset < buffer.count }
        return true
    }

    /// Whether it is waiting for a request head (as opposed to a body).
    var isReadingHead: Bool {
        if case .head = state { return true }
        return false
    }

    package mutating func append(_ bytes: UnsafeRawBufferPointer) {
        if offset > 0 && offset == buffer.count {
            buffer.removeAll(keepingCapacity: buffer.capacity <= 64 * 1024)
            scanFrom = 0
            offset = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// The next event, or nil when more bytes are needed.
    package mutating func next() throws(HTTPParseError) -> Event? {
        switch state {
        case .head:
            guard let head = try parseHead() else { return nil }
            switch head.framing {
            case .length(let length): state = .fixedBody(length)
            case .chunked:
                state = .chunked
                chunked = ChunkedDecoder(maxBodyBytes: limits.maxBodyBytes, maxTrailerBytes: limits.maxHeaderBytes)
                body = []
            }
            return .head(head)
        case .fixedBody(let length):
            guard buffer.count - offset >= length else { return nil }
            let result = Array(buffer[offset..<offset + length])
            offset += length
            finishRequest()
            return .body(result)
        case .chunked:
            guard try chunked.decode(buffer, &offset, emit: { body.append(contentsOf: $0) }) else { return nil }
            let result = body
            body = []
            finishRequest()
            return .body(result)
        }
    }

    private mutating func finishRequest() {
        state = .head
        scanFrom = offset
        // Drop consumed bytes once they dominate, so a long keep-alive stream stays small.
        if offset > 32 * 1024 && offset > buffer.count / 2 {
            buffer.removeSubrange(0..<offset)
            scanFrom -= offset
            offset = 0
        }
    }

    // MARK: Head

    private mutating func parseHead() throws(HTTPParseError) -> Head? {
        // Tolerate empty lines between requests (RFC 9112 section 2.2).
        while offset < buffer.count, buffer[offset] == 0x0D || buffer[offset] == 0x0A { offset += 1 }
        scanFrom = max(scanFrom, offset)
        guard let end = findHeadEnd() else {
            if buffer.count - offset > limits.maxHeaderBytes {
                throw HTTPParseError(status: 431, message: "request header fields exceed \(limits.maxHeaderBytes) bytes")
            }
            return nil
        }
        if end.headEnd - offset > limits.maxHeaderBytes {
            throw HTTPParseError(status: 431, message: "request header fields exceed \(limits.maxHeaderBytes) bytes")
        }
        let head = try buffer.withUnsafeBufferPointer { bytes throws(HTTPParseError) in
            try parseHeadBytes(UnsafeBufferPointer(rebasing: bytes[offset..<end.headEnd]))
        }
        offset = end.bodyStart
        return head
    }

    /// Finds the blank line that ends the head (CRLF CRLF, or bare LF LF as Go and nginx accept).
    private mutating func findHeadEnd() -> (headEnd: Int, bodyStart: Int)? {
        var index = max(scanFrom, offset)
        while index < buffer.count {
            if buffer[index] == 0x0A {
                if index + 1 < buffer.count && buffer[index + 1] == 0x0A { return (index, index + 2) }
                if index + 2 < buffer.count && buffer[index + 1] == 0x0D && buffer[index + 2] == 0x0A { return (index, index + 3) }
            }
            index += 1
        }
        scanFrom = max(offset, buffer.count - 2)
        return nil
    }

    private func parseHeadBytes(_ bytes: UnsafeBufferPointer<UInt8>) throws(HTTPParseError) -> Head {
        var lines = LineReader(bytes)
        guard let requestLine = lines.next() else { throw HTTPParseError(status: 400, message: "empty request") }
        let (method, target, version) = try parseRequestLine(requestLine)

        var headers = HTTPHeaders(minimumCapacity: 8)
        var contentLength: Int?
        var chunked = false
        var hasTransferEncoding = false
        var hostCount = 0
        var connectionTokens: [String] = []
        var expectsContinue = false
        while let line = lines.next() {
            if line.isEmpty { break }
            if line[0] == 0x20 || line[0] == 0x09 {
                throw HTTPParseError(status: 400, message: "obsolete line folding in header fields is not accepted")
            }
            guard let colon = line.firstIndex(of: 0x3A), colon > 0 else {
                throw HTTPParseError(status: 400, message: "malformed header line (no field name and colon)")
            }
            let nameBytes = UnsafeBufferPointer(rebasing: line[0..<colon])
            guard nameBytes.allSatisfy(isTokenByte) else {
                throw HTTPParseError(status: 400, message: "invalid character in header field name")
            }
            var valueStart = colon + 1
            var valueEnd = line.count
            while valueStart < valueEnd, line[valueStart] == 0x20 || line[valueStart] == 0x09 { valueStart += 1 }
            while valueEnd > valueStart, line[valueEnd - 1] == 0x20 || line[valueEnd - 1] == 0x09 { valueEnd -= 1 }
            let valueBytes = UnsafeBufferPointer(rebasing: line[valueStart..<valueEnd])
            guard valueBytes.allSatisfy({ $0 >= 0x20 && $0 != 0x7F || $0 == 0x09 }) else {
                throw HTTPParseError(status: 400, message: "invalid character in header field value")
            }
            let value = String(decoding: valueBytes, as: UTF8.self)
            // Matched as bytes: a String switch compared each name with every case.
            switch knownField(nameBytes) {
            case .contentLength:
                guard let length = decimal(valueBytes) else {
                    throw HTTPParseError(status: 400, message: "invalid Content-Length \"\(value)\"")
                }
                if let contentLength, contentLength != length {
                    throw HTTPParseError(status: 400, message: "conflicting Content-Length values")
                }
                contentLength = length
            case .transferEncoding:
                hasTransferEncoding = true
                let codings = value.lowercased().split(separator: ",").map { $0.trimmingSpaces() }
                if codings == ["chunked"] {
                    chunked = true
                } else {
                    throw HTTPParseError(status: 501, message: "transfer coding \"\(value)\" is not supported (only chunked)")
                }
            case .host:
                hostCount += 1
            case .connection:
                connectionTokens += headerTokens(value)
            case .expect:
                if value.lowercased() == "100-continue" { expectsContinue = true } else {
                    throw HTTPParseError(status: 417, message: "expectation \"\(value)\" is not supported")
                }
            case .other:
                break
            }
            headers.appendLowercasedName(lowercasedASCII(nameBytes), value)
        }

        if version == .http1_1 && hostCount != 1 {
            throw HTTPParseError(status: 400, message: hostCount == 0 ? "missing Host header" : "more than one Host header")
        }
        if hasTransferEncoding && contentLength != nil {
            // Both framings at once is how requests are smuggled past proxies: refuse it.
            throw HTTPParseError(status: 400, message: "both Transfer-Encoding and Content-Length are set")
        }
        let framing: Framing
        if chunked {
            framing = .chunked
        } else if let contentLength {
            if contentLength > limits.maxBodyBytes {
                throw HTTPParseError(status: 413, message: "request body of \(contentLength) bytes exceeds the limit of \(limits.maxBodyBytes) bytes")
            }
            framing = .length(contentLength)
        } else if method == "POST" || method == "PUT" || method == "PATCH" {
            throw HTTPParseError(status: 411, message: "\(method) needs a Content-Length or chunked Transfer-Encoding")
        } else {
            framing = .length(0)
        }

        let keepAlive = version == .http1_1 ? !connectionTokens.contains("close") : connectionTokens.contains("keep-alive")
        let (path, query) = splitTarget(target)
        return Head(method: method, path: path, query: query, version: version, headers: headers, framing: framing,
                    expectsContinue: expectsContinue && version == .http1_1, keepAlive: keepAlive)
    }

    private func parseRequestLine(_ line: UnsafeBufferPointer<UInt8>) throws(HTTPParseError) -> (String, String, HTTPVersion) {
        guard let firstSpace = line.firstIndex(of: 0x20),
              let lastSpace = line.lastIndex(of: 0x20), lastSpace > firstSpace + 1 else {
            throw HTTPParseError(status: 400, message: "malformed request line")
        }
        let methodBytes = UnsafeBufferPointer(rebasing: line[0..<firstSpace])
        let targetBytes = UnsafeBufferPointer(rebasing: line[(firstSpace + 1)..<lastSpace])
        let versionBytes = UnsafeBufferPointer(rebasing: line[(lastSpace + 1)...])
        guard !methodBytes.isEmpty, methodBytes.allSatisfy(isTokenByte) else {
            throw HTTPParseError(status: 400, message: "malformed request method")
        }
        guard targetBytes.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw HTTPParseError(status: 400, message: "malformed request target")
        }
        let version: HTTPVersion
        switch String(decoding: versionBytes, as: UTF8.self) {
        case "HTTP/1.1": version = .http1_1
        case "HTTP/1.0": version = .http1_0
        case let other where other.hasPrefix("HTTP/") && other.count == 8:
            throw HTTPParseError(status: 505, message: "\(other) is not supported; use HTTP/1.1 or HTTP/2")
        default:
            throw HTTPParseError(status: 400, message: "malformed HTTP version")
        }
        var target = String(decoding: targetBytes, as: UTF8.self)
        if !target.hasPrefix("/") {
            // Absolute form (http://host/path) is allowed by RFC 9112; keep only the path.
            let lowered = target.lowercased()
            if lowered.hasPrefix("http://") || lowered.hasPrefix("https://") {
                let rest = target.drop { $0 != ":" }.dropFirst(3)
                target = rest.firstIndex(of: "/").map { String(rest[$0...]) } ?? "/"
            } else if target != "*" {
                throw HTTPParseError(status: 400, message: "malformed request target")
            }
        }
        return (String(decoding: methodBytes, as: UTF8.self), target, version)
    }
}

/// Decodes a chunked body (RFC 9112 section 7.1) as its bytes arrive, for requests the
/// server reads and responses the client reads. Chunk extensions and trailers are skipped.
struct ChunkedDecoder {
    private enum State {
        case size
        case data(Int)
        case dataEnd
        case trailers
        case done
    }

    /// A chunk size with its extensions; nginx and Go refuse far shorter ones in practice.
    static let maxSizeLineBytes = 1024

    private var state = State.size
    private var decodedBytes = 0
    private var trailerBytes = 0
    let maxBodyBytes: Int
    let maxTrailerBytes: Int

    init(maxBodyBytes: Int, maxTrailerBytes: Int) {
        self.maxBodyBytes = maxBodyBytes
        self.maxTrailerBytes = maxTrailerBytes
    }

    /// Decodes from `buffer[offset...]`, handing each piece of data to `emit` and moving
    /// `offset` past what was used. Returns true once the body (and its trailers) ended.
    mutating func decode(_ buffer: [UInt8], _ offset: inout Int, emit: (ArraySlice<UInt8>) -> Void) throws(HTTPParseError) -> Bool {
        while true {
            switch state {
            case .size:
                guard let lineEnd = findLineEnd(buffer, from: offset) else {
                    if buffer.count - offset > ChunkedDecoder.maxSizeLineBytes {
                        throw HTTPParseError(status: 400, message: "chunk size line too long")
                    }
                    return false
                }
                if lineEnd.end - offset > ChunkedDecoder.maxSizeLineBytes {
                    throw HTTPParseError(status: 400, message: "chunk size line too long")
                }
                var size = 0
                var digits = 0
                var index = offset
                while index < lineEnd.end, let digit = hexValue(buffer[index]) {
                    // Checked before the shift: the client picks how many digits there are.
                    guard size <= (Int.max - digit) >> 4 else {
                        throw HTTPParseError(status: 413, message: "chunk size too large")
                    }
                    size = size << 4 | digit
                    digits += 1
                    index += 1
                }
                // Anything after the digits must be a chunk extension (";name=value"), which is ignored.
                if digits == 0 || (index < lineEnd.end && buffer[index] != 0x3B && buffer[index] != 0x20 && buffer[index] != 0x09) {
                    throw HTTPParseError(status: 400, message: "malformed chunk size")
                }
                offset = lineEnd.next
                // decodedBytes never exceeds maxBodyBytes, so the subtraction cannot overflow.
                if size > maxBodyBytes - decodedBytes {
                    throw HTTPParseError(status: 413, message: "request body exceeds the limit of \(maxBodyBytes) bytes")
                }
                state = size == 0 ? .trailers : .data(size)
            case .data(let remaining):
                let available = min(remaining, buffer.count - offset)
                if available == 0 { return false }
                emit(buffer[offset..<offset + available])
                decodedBytes += available
                offset += available
                state = remaining == available ? .dataEnd : .data(remaining - available)
            case .dataEnd:
                guard let lineEnd = findLineEnd(buffer, from: offset) else {
                    if buffer.count - offset >= 2 { throw HTTPParseError(status: 400, message: "chunk data not followed by CRLF") }
                    return false
                }
                guard lineEnd.end == offset else { throw HTTPParseError(status: 400, message: "chunk data longer than its size") }
                offset = lineEnd.next
                state = .size
            case .trailers:
                guard let lineEnd = findLineEnd(buffer, from: offset) else {
                    if trailerBytes + buffer.count - offset > maxTrailerBytes {
                        throw HTTPParseError(status: 431, message: "trailer fields exceed \(maxTrailerBytes) bytes")
                    }
                    return false
                }
                let isEmptyLine = lineEnd.end == offset
                trailerBytes += lineEnd.next - offset
                offset = lineEnd.next
                if isEmptyLine {
                    state = .done
                    return true
                }
            case .done:
                return true
            }
        }
    }
}

/// The end of the line starting at `start` (before an optional CR) and where the next begins.
func findLineEnd(_ buffer: [UInt8], from start: Int) -> (end: Int, next: Int)? {
    var index = start
    while index < buffer.count {
        if buffer[index] == 0x0A {
            let end = index > start && buffer[index - 1] == 0x0D ? index - 1 : index
            return (end, index + 1)
        }
        index += 1
    }
    return nil
}

/// Splits a buffer into lines at LF, dropping a CR before it.
private struct LineReader {
    let bytes: UnsafeBufferPointer<UInt8>
    var position = 0

    init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    mutating func next() -> UnsafeBufferPointer<UInt8>? {
        guard position <= bytes.count else { return nil }
        if position == bytes.count {
            position += 1
            return nil
        }
        var end = position
        while end < bytes.count && bytes[end] != 0x0A { end += 1 }
        var lineEnd = end
        if lineEnd > position && bytes[lineEnd - 1] == 0x0D { lineEnd -= 1 }
        let line = UnsafeBufferPointer(rebasing: bytes[position..<lineEnd])
        position = end + 1
        return line
    }
}

/// RFC 9110 token characters (method and field names): one bit per ASCII byte, bytes 0-63
/// in the first mask and 64-127 in the second.
@inline(__always)
func isTokenByte(_ byte: UInt8) -> Bool {
    // ! # $ % & ' * + - . 0-9
    let low: UInt64 = 0x03FF_6CFA_0000_0000
    // A-Z ^ _ ` a-z | ~
    let high: UInt64 = 0x57FF_FFFF_C7FF_FFFE
    return byte < 64 ? (low >> UInt64(byte)) & 1 == 1 : byte < 128 && (high >> UInt64(byte - 64)) & 1 == 1
}

/// The header fields the parser acts on.
private enum KnownField { case contentLength, transferEncoding, host, connection, expect, other }

@inline(__always)
private func knownField(_ name: UnsafeBufferPointer<UInt8>) -> KnownField {
    switch name.count {
    case 4 where equalsIgnoringASCIICase(name, "host"): .host
    case 6 where equalsIgnoringASCIICase(name, "expect"): .expect
    case 10 where equalsIgnoringASCIICase(name, "connection"): .connection
    case 14 where equalsIgnoringASCIICase(name, "content-length"): .contentLength
    case 17 where equalsIgnoringASCIICase(name, "transfer-encoding"): .transferEncoding
    default: .other
    }
}

/// Whether `bytes` lower-cased (ASCII letters only) are `lowercase`, a literal of the same length.
@inline(__always)
private func equalsIgnoringASCIICase(_ bytes: UnsafeBufferPointer<UInt8>, _ lowercase: StaticString) -> Bool {
    let expected = lowercase.utf8Start
    for index in 0..<bytes.count {
        let byte = bytes[index]
        if ((byte >= 0x41 && byte <= 0x5A) ? byte | 0x20 : byte) != expected[index] { return false }
    }
    return true
}

/// The value of a run of ASCII digits (at most 18, so it fits in an Int), or nil for
/// anything else: no sign, no space, no overflow (Int("+5") and Int("-5") would parse).
func decimal(_ bytes: some Collection<UInt8>) -> Int? {
    guard !bytes.isEmpty, bytes.count <= 18 else { return nil }
    var value = 0
    for byte in bytes {
        guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") else { return nil }
        value = value * 10 + Int(byte - UInt8(ascii: "0"))
    }
    return value
}

@inline(__always)
private func hexValue(_ byte: UInt8) -> Int? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): Int(byte - UInt8(ascii: "0"))
    case UInt8(ascii: "a")...UInt8(ascii: "f"): Int(byte - UInt8(ascii: "a") + 10)
    case UInt8(ascii: "A")...UInt8(ascii: "F"): Int(byte - UInt8(ascii: "A") + 10)
    default: nil
    }
}

private func lowercasedASCII(_ bytes: UnsafeBufferPointer<UInt8>) -> String {
    String(unsafeUninitializedCapacity: bytes.count) { out in
        for index in 0..<bytes.count {
            let byte = bytes[index]
            out[index] = (byte >= 0x41 && byte <= 0x5A) ? byte | 0x20 : byte
        }
        return bytes.count
    }
}

func splitTarget(_ target: String) -> (path: String, query: String?) {
    // By bytes: a search by Character segments graphemes, a hundred times the work here.
    guard let question = target.utf8.firstIndex(of: UInt8(ascii: "?")) else { return (target, nil) }
    return (String(target[..<question]), String(target[target.utf8.index(after: question)...]))
}

/// The lower-cased elements of a comma-separated header value (RFC 9110 section 5.6.1):
/// `keep-alive, Upgrade` has "keep-alive" and "upgrade".
func headerTokens(_ value: String) -> [String] {
    value.lowercased().split(separator: ",").map { $0.trimmingSpaces() }.filter { !$0.isEmpty }
}

extension Substring {
    func trimmingSpaces() -> String {
        var slice = self[...]
        while let first = slice.first, first == " " || first == "\t" { slice = slice.dropFirst() }
        while let last = slice.last, last == " " || last == "\t" { slice = slice.dropLast() }
        return String(slice)
    }
}
