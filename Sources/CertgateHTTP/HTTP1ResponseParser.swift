/// Reads HTTP/1.1 responses one after another out of a connection's byte stream, handing
/// body bytes out as they arrive, so a watch stream can be decoded while it is still open.
package struct HTTP1ResponseParser {
    package struct Head {
        package var status: Int
        package var headers: HTTPHeaders
        /// Whether the connection may carry another request afterwards.
        package var keepAlive: Bool
    }

    package enum Event {
        case head(Head)
        case body([UInt8])
        case end
    }

    private enum State {
        case head
        case fixed(Int)
        case chunked(ChunkedDecoder)
        case untilClose
        /// The body's last bytes went out as `.body`; `.end` is still owed.
        case endPending
    }

    private var buffer: [UInt8] = []
    private var offset = 0
    private var state = State.head
    private let maxHeadBytes = 1 << 20

    package init() {}

    package mutating func append(_ bytes: UnsafeRawBufferPointer) {
        if offset == buffer.count {
            buffer.removeAll(keepingCapacity: buffer.capacity <= 64 * 1024)
            offset = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// The next event, or nil when more bytes are needed. `bodyless` is true for the answer
    /// to a HEAD request.
    package mutating func next(bodyless: Bool = false) throws(HTTPParseError) -> Event? {
        switch state {
        case .head:
            guard let head = try parseHead(bodyless: bodyless) else { return nil }
            return .head(head)
        case .fixed(let remaining):
            if remaining == 0 {
                state = .head
                return .end
            }
            let available = min(remaining, buffer.count - offset)
            guard available > 0 else { return nil }
            let piece = Array(buffer[offset..<offset + available])
            offset += available
            state = .fixed(remaining - available)
            return .body(piece)
        case .chunked(var decoder):
            var piece: [UInt8] = []
            let finished = try decoder.decode(buffer, &offset) { piece.append(contentsOf: $0) }
            if !piece.isEmpty {
                state = finished ? .endPending : .chunked(decoder)
                return .body(piece)
            }
            state = finished ? .head : .chunked(decoder)
            return finished ? .end : nil
        case .endPending:
            state = .head
            return .end
        case .untilClose:
            guard offset < buffer.count else { return nil }
            let piece = Array(buffer[offset...])
            offset = buffer.count
            return .body(piece)
        }
    }

    /// The connection closed: the end of a body delimited by closing, or an error.
    package mutating func peerClosed() throws(HTTPParseError) -> Event {
        if case .untilClose = state {
            state = .head
            return .end
        }
        throw HTTPParseError(status: 502, message: "the server closed the connection in the middle of a response")
    }

    private mutating func parseHead(bodyless: Bool) throws(HTTPParseError) -> Head? {
        while true {
            guard let headEnd = findHeadEnd() else {
                if buffer.count - offset > maxHeadBytes { throw HTTPParseError(status: 502, message: "response head too large") }
                return nil
            }
            var lines: [ArraySlice<UInt8>] = []
            var start = offset
            while start < headEnd.end, let line = findLineEnd(buffer, from: start) {
                lines.append(buffer[start..<line.end])
                start = line.next
            }
            offset = headEnd.next
            // "HTTP/1.x NNN": exactly three digits, so no sign, no space, no overflow.
            guard let statusLine = lines.first, statusLine.starts(with: Array("HTTP/1.".utf8)), statusLine.count >= 12,
                  statusLine[statusLine.startIndex + 8] == UInt8(ascii: " "),
                  let status = decimal(statusLine.dropFirst(9).prefix(3)), status >= 100,
                  statusLine.count == 12 || statusLine[statusLine.startIndex + 12] == UInt8(ascii: " ") else {
                throw HTTPParseError(status: 502, message: "malformed status line")
            }
            let isHTTP10 = statusLine[statusLine.startIndex + 7] == UInt8(ascii: "0")
            var headers = HTTPHeaders()
            for line in lines.dropFirst() {
                guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else {
                    throw HTTPParseError(status: 502, message: "malformed response header")
                }
                let name = String(decoding: line[line.startIndex..<colon], as: UTF8.self)
                let value = String(decoding: line[(colon + 1)...], as: UTF8.self).trimmingSpacesAndTabs()
                headers.add(name, value)
            }
            // 1xx answers are interim: the real one follows.
            if status >= 100 && status < 200 { continue }
            let connection = headers.values("connection").flatMap(headerTokens)
            var keepAlive = isHTTP10 ? connection.contains("keep-alive") : !connection.contains("close")
            if bodyless || status == 204 || status == 304 {
                state = .fixed(0)
            } else if headers.values("transfer-encoding").flatMap(headerTokens).contains("chunked") {
                state = .chunked(ChunkedDecoder(maxBodyBytes: .max, maxTrailerBytes: maxHeadBytes))
            } else if let text = headers["content-length"] {
                // Digits only: Int("-1") or Int("+1") would parse, and a negative length never ends.
                guard let length = decimal(text.utf8) else {
                    throw HTTPParseError(status: 502, message: "invalid Content-Length \"\(text.prefix(64))\" in a response")
                }
                state = .fixed(length)
            } else {
                state = .untilClose
                keepAlive = false
            }
            return Head(status: status, headers: headers, keepAlive: keepAlive)
        }
    }

    private func findHeadEnd() -> (end: Int, next: Int)? {
        var start = offset
        while let line = findLineEnd(buffer, from: start) {
            if line.end == start { return (start, line.next) }
            start = line.next
        }
        return nil
    }
}

extension String {
    func trimmingSpacesAndTabs() -> String {
        Substring(self).trimmingSpaces()
    }
}
