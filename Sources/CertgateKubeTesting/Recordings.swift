import Foundation

/// An HTTP answer as `curl -i` prints it (a `.http` recording: curl removed any chunked
/// framing) or as `curl -i --raw` keeps it (a `.raw` recording: the chunks as sent).
public struct RecordedAnswer: Sendable {
    /// "HTTP/1.1" or "HTTP/2".
    public var httpVersion: String
    public var status: Int
    public var headers: [(name: String, value: String)]
    /// The body, without chunked framing.
    public var body: [UInt8]
    /// `.raw` only: every chunk as it was framed (the terminating empty chunk not included).
    public var chunks: [[UInt8]]?
    /// `.raw` only: whether the terminating zero-size chunk arrived (a watch that ended).
    public var ended: Bool

    public init(parsing bytes: [UInt8], raw: Bool) throws {
        // curl writes CRLF; one recording was edited (redacted) with an editor that wrote LF.
        let crlf = bytes.firstRange(of: Array("\r\n\r\n".utf8))
        let lf = bytes.firstRange(of: Array("\n\n".utf8))
        guard let headEnd = [crlf, lf].compactMap({ $0 }).min(by: { $0.lowerBound < $1.lowerBound }) else {
            throw RecordingError("no blank line after the head")
        }
        let head = bytes[..<headEnd.lowerBound].split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
            .map { String(decoding: $0.last == UInt8(ascii: "\r") ? $0.dropLast() : $0, as: UTF8.self) }
        let statusLine = head[0].split(separator: " ", omittingEmptySubsequences: true)
        guard statusLine.count >= 2, statusLine[0].hasPrefix("HTTP/"), let status = Int(statusLine[1]) else {
            throw RecordingError("\"\(head[0])\" is not a status line")
        }
        httpVersion = String(statusLine[0])
        self.status = status
        headers = head.dropFirst().compactMap { line in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        let rest = Array(bytes[headEnd.upperBound...])
        ended = false
        guard raw, headers.contains(where: { $0.name.lowercased() == "transfer-encoding" && $0.value == "chunked" }) else {
            body = rest
            chunks = nil
            return
        }
        var chunks: [[UInt8]] = []
        var offset = 0
        while let lineEnd = rest[offset...].firstRange(of: Array("\r\n".utf8)) {
            guard let size = Int(String(decoding: rest[offset..<lineEnd.lowerBound], as: UTF8.self), radix: 16),
                  size >= 0, size <= rest.count - lineEnd.upperBound - 2 else {
                throw RecordingError("bad chunk framing at body offset \(offset)")
            }
            if size == 0 {
                ended = true
                break
            }
            chunks.append(Array(rest[lineEnd.upperBound..<lineEnd.upperBound + size]))
            offset = lineEnd.upperBound + size + 2
        }
        self.chunks = chunks
        body = chunks.flatMap { $0 }
    }

    /// Every value of the header `name` (any case), in order.
    public func values(_ name: String) -> [String] {
        headers.filter { $0.name.lowercased() == name.lowercased() }.map(\.value)
    }

    /// The body as JSON, nil when it is not JSON.
    public var json: Any? { try? JSONSerialization.jsonObject(with: Data(body), options: [.fragmentsAllowed]) }
}

/// How one recording was produced, taken from the README of the recordings folder: the
/// request to send again for a `.http` or `.raw` answer.
public struct RecordedRequest: Sendable {
    public enum Credentials: Equatable, Sendable {
        /// `$TOKEN`: the admin token.
        case admin
        /// No Authorization header: the anonymous user.
        case none
        /// A bearer token the server does not know.
        case unknownToken(String)
        /// `$(kubectl create token NAME -n NAMESPACE)`: a ServiceAccount with no RBAC grants.
        case serviceAccount(namespace: String, name: String)
    }

    public var method = "GET"
    /// Path and query, as sent: "/apis/certgate.dev/v1/namespaces/app1/pkis?limit=1".
    public var target: String?
    public var headers: [(name: String, value: String)] = []
    public var body: [UInt8]?
    public var credentials = Credentials.none
    /// nil: curl's own User-Agent ("curl/7.88.1").
    public var userAgent: String?
    /// Whether curl may speak HTTP/2 (`$CURL` and most commands pin HTTP/1.1).
    public var http2 = true
    /// `--raw`: the chunked framing is the recording.
    public var raw = false
    /// `--max-time`: curl cut the answer after this long.
    public var maxTime: Double?

    /// The value of a query parameter of `target`, percent-decoded.
    public func query(_ name: String) -> String? {
        guard let target, let components = URLComponents(string: target) else { return nil }
        return components.queryItems?.first { $0.name == name }?.value
    }

    public var path: String { target.map { String($0.prefix { $0 != "?" }) } ?? "" }
}

/// The recordings of a real API server in one folder, with the README that says how each
/// was produced. A new recording listed in the README is picked up without new code.
public struct RecordingCatalog {
    public struct Row {
        public let files: [String]
        public let what: String
        public let how: String
    }

    public let directory: String
    public let rows: [Row]

    public init(directory: String) throws {
        self.directory = directory
        let readme = try String(contentsOfFile: "\(directory)/README.md", encoding: .utf8)
        rows = readme.components(separatedBy: "\n").compactMap { line -> Row? in
            guard line.hasPrefix("| ") else { return nil }
            let cells = line.dropFirst(2).components(separatedBy: " | ").map { $0.trimmingCharacters(in: CharacterSet(charactersIn: " |")) }
            guard cells.count == 3, cells[0] != "file", !cells[0].hasPrefix("---") else { return nil }
            let files = cells[0].components(separatedBy: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            return Row(files: files, what: cells[1], how: cells[2])
        }
    }

    /// The recorded answers: every `.http` and `.raw` file that starts with a status line.
    public var answerFiles: [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { ($0.hasSuffix(".http") || $0.hasSuffix(".raw")) && (try? answer($0)) != nil }.sorted()
    }

    public func bytes(_ file: String) throws -> [UInt8] {
        try [UInt8](Data(contentsOf: URL(fileURLWithPath: "\(directory)/\(file)")))
    }

    public func answer(_ file: String) throws -> RecordedAnswer {
        try RecordedAnswer(parsing: try bytes(file), raw: file.hasSuffix(".raw"))
    }

    /// The request that produced `file`, rebuilt from its README row (and the rows before it
    /// for "same ..." rows), with `requests/NAME.body` as its body when there is one.
    public func request(for file: String) throws -> RecordedRequest {
        guard let index = rows.firstIndex(where: { $0.files.contains(file) }) else {
            throw RecordingError("\(file) has no row in the README")
        }
        return try request(row: index, file: file)
    }

    private func request(row index: Int, file: String) throws -> RecordedRequest {
        let row = rows[index]
        let commands = backticked(row.how)
        let full = commands.first { $0.hasPrefix("$CURL") || $0.hasPrefix("curl ") }
        var built: RecordedRequest
        var previous: RecordedRequest?
        if index > 0 { previous = try? request(row: index - 1, file: rows[index - 1].files[0]) }
        if let full {
            built = RecordedRequest()
            apply(words(full), to: &built)
        } else if row.how.hasPrefix("same"), let previous {
            // "same with `-H ...`": the previous row's request with these arguments added.
            built = previous
            built.body = nil
            for fragment in commands where fragment.hasPrefix("-") { apply(words(fragment), to: &built) }
        } else {
            throw RecordingError("the README row of \(file) gives no curl command")
        }
        if row.how.contains("without `--http1.1`") { built.http2 = true }
        if let type = backticked(row.what).first(where: { $0.hasPrefix("application/") }),
           !built.headers.contains(where: { $0.name.lowercased() == "content-type" }) {
            built.headers.append(("Content-Type", type))
        } else if let type = backticked(row.what).first(where: { $0.hasPrefix("application/") }), row.how.contains("that content type") {
            built.headers.removeAll { $0.name.lowercased() == "content-type" }
            built.headers.append(("Content-Type", type))
        }
        let stem = file.components(separatedBy: ".").dropLast().joined(separator: ".")
        if let body = try? bytes("requests/\(stem).body") {
            built.body = body
            if built.method == "GET" { built.method = "POST" }
        }
        if built.body != nil && !built.headers.contains(where: { $0.name.lowercased() == "content-type" }) {
            // Rows that elide the arguments ("-X POST ... @requests/...") send JSON as the first rows spell out.
            built.headers.append(("Content-Type", "application/json"))
        }
        try resolveTarget(&built, file: file, previous: previous, previousFile: index > 0 ? rows[index - 1].files[0] : nil)
        return built
    }

    /// Fills in what the README leaves out of the URL: "$API/.../pkis" elides the path to the
    /// collection another row spells out; a POST without a URL goes to the collection of its
    /// body's kind; a DELETE without one to the object it answered with; a GET without one
    /// to the previous row's URL; `continue=<token ...>` takes the previous answer's token.
    private func resolveTarget(_ request: inout RecordedRequest, file: String, previous: RecordedRequest?, previousFile: String?) throws {
        if var target = request.target, let elision = target.range(of: "...") {
            let rest = target[elision.upperBound...].drop { $0 == "/" }
            let segment = rest.prefix { $0 != "/" && $0 != "?" }
            guard let prefix = spelledOutPaths.lazy.compactMap({ path -> String? in
                guard let range = path.range(of: "/\(segment)/") ?? (path.hasSuffix("/\(segment)") ? path.range(of: "/\(segment)", options: .backwards) : nil)
                else { return nil }
                return String(path[..<range.lowerBound]) + "/"
            }).first else { throw RecordingError("no row spells out the path \"...\" stands for in \(target)") }
            target = prefix + rest
            request.target = target
        }
        if request.target == nil {
            let recorded = try? answer(file)
            if request.method == "POST", let body = request.body, let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] {
                request.target = collectionPath(of: object)
            } else if request.method != "GET", let object = recorded?.json as? [String: Any], let path = objectPath(of: object) {
                request.target = path
            } else {
                request.target = previous?.target
            }
        }
        if let target = request.target, let placeholder = target.range(of: #"continue=<[^>]*>"#, options: .regularExpression) {
            guard let previousFile, let page = (try? answer(previousFile))?.json as? [String: Any],
                  let token = (page["metadata"] as? [String: Any])?["continue"] as? String else {
                throw RecordingError("\(file): no continue token in the answer before it")
            }
            let escaped = token.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? token
            request.target = target.replacingCharacters(in: placeholder, with: "continue=\(escaped)")
        }
        guard request.target != nil else { throw RecordingError("\(file): the README row gives no URL") }
    }

    /// Every URL path the README writes out in full.
    private var spelledOutPaths: [String] {
        rows.flatMap { backticked($0.how) }.flatMap(words).compactMap { word in
            guard word.hasPrefix("$API/"), !word.contains("...") else { return nil }
            return String(word.dropFirst(4).prefix { $0 != "?" })
        }
    }

    private func apply(_ words: [String], to request: inout RecordedRequest) {
        var index = 0
        let plainCurl = words.first == "curl"
        func next() -> String? {
            index += 1
            return index < words.count ? words[index] : nil
        }
        while index < words.count {
            let word = words[index]
            switch word {
            case "$CURL":
                request.userAgent = "certgate-capture/1.0"
                request.http2 = false
                request.headers.removeAll { $0.name.lowercased() == "accept" }
                request.headers.append(("Accept", "application/json"))
                request.credentials = .admin
            case "..." where plainCurl && index < words.count - 1:
                // "curl ... -H X": the usual $CURL arguments, then those that differ.
                apply(["$CURL"], to: &request)
            case "curl": request.userAgent = nil
            case "--http1.1": request.http2 = false
            case "-X": request.method = next() ?? "GET"
            case "-A": request.userAgent = next()
            case "--raw": request.raw = true
            case "--max-time": request.maxTime = next().flatMap(Double.init)
            case "--cacert": _ = next()
            case "--data", "--data-binary":
                guard let data = next() else { break }
                if data.hasPrefix("@") {
                    request.body = try? bytes(String(data.dropFirst()))
                } else {
                    request.body = Array(data.utf8)
                }
                if request.method == "GET" { request.method = "POST" }
            case "-H":
                guard let header = next(), let colon = header.firstIndex(of: ":") else { break }
                let name = String(header[..<colon])
                let value = header[header.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                if name.lowercased() == "authorization" {
                    request.credentials = credentials(value)
                } else {
                    request.headers.removeAll { $0.name.lowercased() == name.lowercased() }
                    request.headers.append((name, value))
                }
            default:
                if word.hasPrefix("$API") { request.target = String(word.dropFirst(4)) }
                if word.hasPrefix("@requests/") {
                    // "-X POST ... @requests/NAME.body": --data-binary elided.
                    request.body = try? bytes(String(word.dropFirst()))
                }
            }
            index += 1
        }
    }

    private func credentials(_ value: String) -> RecordedRequest.Credentials {
        if value == "Bearer $TOKEN" { return .admin }
        if let range = value.range(of: #"\$\(kubectl create token ([^ ]+) -n ([^ )]+)\)"#, options: .regularExpression) {
            let parts = value[range].dropFirst(2).dropLast().split(separator: " ")
            return .serviceAccount(namespace: String(parts[5]), name: String(parts[3]))
        }
        return .unknownToken(String(value.dropFirst("Bearer ".count)))
    }

    /// /apis/GROUP/VERSION/namespaces/NS/PLURAL of an object's kind (plurals of the kinds
    /// recorded here are their lower-case kind plus "s").
    private func collectionPath(of object: [String: Any]) -> String? {
        guard let apiVersion = object["apiVersion"] as? String, let kind = object["kind"] as? String else { return nil }
        let base = apiVersion.contains("/") ? "/apis/\(apiVersion)" : "/api/\(apiVersion)"
        let namespace = (object["metadata"] as? [String: Any])?["namespace"] as? String
        return base + (namespace.map { "/namespaces/\($0)" } ?? "") + "/\(kind.lowercased())s"
    }

    private func objectPath(of object: [String: Any]) -> String? {
        guard let name = (object["metadata"] as? [String: Any])?["name"] as? String, let collection = collectionPath(of: object) else { return nil }
        return "\(collection)/\(name)"
    }
}

/// The spans of `text` between backticks.
private func backticked(_ text: String) -> [String] {
    let parts = text.components(separatedBy: "`")
    return stride(from: 1, to: parts.count, by: 2).map { parts[$0] }
}

/// A shell command split into words: single quotes keep text as is, double quotes keep
/// `$(...)` whole.
private func words(_ command: String) -> [String] {
    var words: [String] = []
    var current = ""
    var inWord = false
    var quote: Character?
    var depth = 0
    for character in command {
        if let open = quote {
            if character == open && depth == 0 { quote = nil } else {
                if character == "(" && current.hasSuffix("$") { depth += 1 }
                if character == ")" && depth > 0 { depth -= 1 }
                current.append(character)
            }
        } else if character == "'" || character == "\"" {
            quote = character
            inWord = true
        } else if character == " " {
            if inWord { words.append(current) }
            current = ""
            inWord = false
        } else {
            current.append(character)
            inWord = true
        }
    }
    if inWord { words.append(current) }
    return words
}

public struct RecordingError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
