import CertgateJSON

/// Header fields in arrival order; names are stored lower-cased (HTTP/2 requires it and
/// HTTP/1.1 names are case-insensitive).
public struct HTTPHeaders: Sendable, Sequence, ExpressibleByDictionaryLiteral {
    public private(set) var fields: [(name: String, value: String)] = []

    public init() {}

    /// Room for `count` fields in one allocation: growing field by field reallocated three
    /// times for a typical request's head.
    init(minimumCapacity count: Int) {
        fields.reserveCapacity(count)
    }

    public init(dictionaryLiteral elements: (String, String)...) {
        for (name, value) in elements { add(name, value) }
    }

    public mutating func add(_ name: String, _ value: String) {
        fields.append((name.lowercasedUnlessLowercaseASCII(), value))
    }

    /// For the parsers, which lower-case names as they read them.
    mutating func appendLowercasedName(_ name: String, _ value: String) {
        fields.append((name, value))
    }

    /// The first value of `name` (case-insensitive).
    public subscript(_ name: String) -> String? {
        let lowered = name.lowercasedUnlessLowercaseASCII()
        return fields.first { $0.name == lowered }?.value
    }

    /// Every value of `name`, in order.
    public func values(_ name: String) -> [String] {
        let lowered = name.lowercasedUnlessLowercaseASCII()
        return fields.filter { $0.name == lowered }.map(\.value)
    }

    public func contains(_ name: String) -> Bool { self[name] != nil }

    public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> { fields.makeIterator() }
}

public enum HTTPVersion: Sendable, Equatable, CustomStringConvertible {
    case http1_0, http1_1, http2

    public var description: String {
        switch self {
        case .http1_0: "HTTP/1.0"
        case .http1_1: "HTTP/1.1"
        case .http2: "HTTP/2"
        }
    }
}

/// A complete request as a handler sees it: the body is fully read before the handler runs.
public struct HTTPRequest: Sendable {
    public var method: String
    /// The path without the query (`/validate`).
    public var path: String
    /// The raw query after `?` (`timeout=10s`), if any.
    public var query: String?
    public var headers: HTTPHeaders
    public var body: [UInt8]
    public var version: HTTPVersion

    public init(method: String, path: String, query: String? = nil, headers: HTTPHeaders = HTTPHeaders(),
                body: [UInt8] = [], version: HTTPVersion = .http1_1) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.version = version
    }

    /// The value of `name` in the query string (no percent-decoding).
    public func queryValue(_ name: String) -> String? {
        guard let query else { return nil }
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            if parts.first.map(String.init) == name { return parts.count > 1 ? String(parts[1]) : "" }
        }
        return nil
    }
}

/// What a handler answers. Content-Length, Date and Connection are added by the server.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]
    /// A body written over time instead of `body` (see ``ResponseStream``).
    public var stream: ResponseStream?

    public init(status: Int, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = [], stream: ResponseStream? = nil) {
        self.status = status
        self.headers = headers
        self.body = body
        self.stream = stream
    }

    /// A plain-text answer ending in a newline.
    public static func text(_ status: Int, _ message: String, headers: HTTPHeaders = HTTPHeaders()) -> HTTPResponse {
        var headers = headers
        headers.add("content-type", "text/plain; charset=utf-8")
        return HTTPResponse(status: status, headers: headers, body: Array((message + "\n").utf8))
    }

    /// A JSON answer; `json` must already be encoded.
    public static func json(_ status: Int, _ json: [UInt8]) -> HTTPResponse {
        HTTPResponse(status: status, headers: ["content-type": "application/json"], body: json)
    }

    /// The server's own error answers: a JSON body like the API server's, so clients that
    /// expect JSON can read them.
    public static func error(_ status: Int, _ message: String, headers: HTTPHeaders = HTTPHeaders()) -> HTTPResponse {
        var headers = headers
        headers.add("content-type", "application/json")
        var body = JSONWriter()
        body.object { object in
            object.member("code", int: status)
            object.member("reason", string: reasonPhrase(status))
            object.member("message", string: message)
        }
        return HTTPResponse(status: status, headers: headers, body: body.bytes + [UInt8(ascii: "\n")])
    }
}

/// The reason phrase for a status code ("Not Found").
public func reasonPhrase(_ status: Int) -> String {
    switch status {
    case 100: "Continue"
    case 200: "OK"
    case 201: "Created"
    case 204: "No Content"
    case 400: "Bad Request"
    case 401: "Unauthorized"
    case 403: "Forbidden"
    case 404: "Not Found"
    case 405: "Method Not Allowed"
    case 408: "Request Timeout"
    case 411: "Length Required"
    case 413: "Content Too Large"
    case 415: "Unsupported Media Type"
    case 422: "Unprocessable Content"
    case 429: "Too Many Requests"
    case 431: "Request Header Fields Too Large"
    case 500: "Internal Server Error"
    case 501: "Not Implemented"
    case 503: "Service Unavailable"
    case 505: "HTTP Version Not Supported"
    default: "Status \(status)"
    }
}
