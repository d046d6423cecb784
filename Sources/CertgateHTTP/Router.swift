/// A handler: a plain function from a request to a response.
///
/// Handlers run on the event loop that read the request, so they must not block: the
/// admission work they do is short and CPU-bound.
public typealias HTTPHandler = @Sendable (HTTPRequest) -> HTTPResponse

/// Exact-path routing with per-method handlers; answers 404 and 405 itself.
public struct Router: Sendable {
    /// A server has a handful of routes: comparing paths in order costs less per request than
    /// hashing them for a dictionary (two lookups were 1% of an admission review).
    private var routes: [(path: String, methods: [(method: String, handler: HTTPHandler)])] = []
    /// Answers paths no route names (for servers with dynamic paths, such as a test API server).
    public var fallback: HTTPHandler?

    public init() {}

    /// Serves `method` (GET, POST, ...) on `path`. GET routes also answer HEAD.
    public mutating func add(_ method: String, _ path: String, _ handler: @escaping HTTPHandler) {
        let method = method.uppercased()
        guard let index = routes.firstIndex(where: { $0.path == path }) else {
            routes.append((path, [(method, handler)]))
            return
        }
        routes[index].methods.removeAll { $0.method == method }
        routes[index].methods.append((method, handler))
    }

    private func methods(for path: String) -> [(method: String, handler: HTTPHandler)]? {
        routes.first { $0.path == path }?.methods
    }

    /// The label a request is counted under in metrics: its route, or "other" for unknown
    /// paths, so that scanners cannot grow the metric set.
    public func metricsPath(for path: String) -> String {
        methods(for: path) == nil ? "other" : path
    }

    public func respond(to request: HTTPRequest) -> HTTPResponse {
        guard let methods = methods(for: request.path) else {
            return fallback?(request) ?? .error(404, "no handler for \(request.path)")
        }
        if let route = methods.first(where: { $0.method == request.method }) {
            return route.handler(request)
        }
        if request.method == "HEAD", let get = methods.first(where: { $0.method == "GET" }) {
            // The transport sends the GET answer's head (with its Content-Length) and no body.
            return get.handler(request)
        }
        let allowed = methods.map(\.method).sorted().joined(separator: ", ")
        return .error(405, "\(request.method) is not allowed on \(request.path); allowed: \(allowed)", headers: ["allow": allowed])
    }
}
