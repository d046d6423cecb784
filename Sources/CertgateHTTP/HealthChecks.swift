import CertgateLocking
import Synchronization

/// Named readiness checks behind GET /readyz, as Kubernetes components report them: 200 "ok"
/// when all pass, 503 listing each failing check and why. Parts of Certgate add their own.
public final class ReadinessChecks: Sendable {
    /// A check returns nil when ready, or the reason it is not.
    public typealias Check = @Sendable () -> String?

    private let checks = Locked<[(name: String, check: Check)]>([])

    public init() {}

    public func add(_ name: String, _ check: @escaping Check) {
        checks.withLock { $0.append((name, check)) }
    }

    /// The failing checks as (name, reason), in the order they were added.
    public func failures() -> [(name: String, reason: String)] {
        checks.withLock { $0 }.compactMap { entry in entry.check().map { (entry.name, $0) } }
    }

    /// The /readyz answer; `?verbose` lists passing checks too.
    public func respond(_ request: HTTPRequest) -> HTTPResponse {
        let all = checks.withLock { $0 }
        var lines: [String] = []
        var ready = true
        for (name, check) in all {
            if let reason = check() {
                ready = false
                lines.append("[-]\(name) failed: \(reason)")
            } else {
                lines.append("[+]\(name) ok")
            }
        }
        if ready && request.queryValue("verbose") == nil { return .text(200, "ok") }
        lines.append(ready ? "readyz check passed" : "readyz check failed")
        return .text(ready ? 200 : 503, lines.joined(separator: "\n"))
    }
}

extension Router {
    /// GET /healthz (the process is alive and serving) and GET /readyz (every check passes).
    public mutating func addHealthRoutes(_ readiness: ReadinessChecks) {
        add("GET", "/healthz") { _ in .text(200, "ok") }
        add("GET", "/livez") { _ in .text(200, "ok") }
        add("GET", "/readyz") { readiness.respond($0) }
    }
}
