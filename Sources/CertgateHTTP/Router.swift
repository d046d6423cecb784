/// A handler: a plain function from a request to a response.
///
/// Handlers run on the event loop that read the request, so they must not block: the
/// admission work they do is short and CPU-bound.
public typealias HTTPHandler = @Sendable (HTTPRequest) -> HTTPResponse

/// Exact-path routing with per-method handlers; answers 404 and 405 itself.
public struct Router: Sendable {
    private var routes: [String: [String: HTTPHandler]] = [:]
    /// Answers paths no route names (for servers with dynamic paths, such as a test API server).
    public var fallback: HTTPHandler?

    public init() {}

    /// Serves `method` (GET, POST, ...) on `path`. GET routes also answer HEAD.
    public mutating func add(_ method: String, _ path: String, _ handler: @escaping HTTPHandler) {
        routes[path, default: [:]][method.uppercased()] = handler
    }

    /// The label a request is counted under in metrics: its route, or "other" for unknown
    /// paths, so that scanners cannot grow the metric set.
    public func metricsPath(for path: String) -> String {
        routes[path] == nil ? "other" : path
    }

    public func respond(to request: HTTPRequest) -> HTTPResponse {
        guard let methods = routes[request.path] else {
            return fallback?(request) ?? .error(404, "no handler for \(request.path)")
        }
        if let handler = methods[request.method] {
            return handler(request)
        }
        if request.method == "HEAD", let get = methods["GET"] {
            // The transport sends the GET answer's head (with its Content-Length) and no body.
            return get(request)
        }
        let allowed = methods.keys.sorted().joined(separator: ", ")
        return .error(405, "\(request.method) is not allowed on \(request.path); allowed: \(allowed)", headers: ["allow": allowed])
    }
}
