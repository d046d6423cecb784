import CertgateSystem
import CertgateLocking
import CertgateHTTP
import CertgateNet
import Logging
import Synchronization

/// Tells the operator about failures that stop progress: each logged at warning the first
/// time it happens for its subject (a Pki's key, an informer's resource), again when the
/// reason changes or after `repeatAfter` seconds, and at debug in between; and counted by
/// reason, so a dashboard sees an RBAC denial or a failing write that the logs mention once.
public final class FailureReporter: Sendable {
    private let logger: Logger?
    private let count: (@Sendable (_ reason: String) -> Void)?
    private let repeatAfter: Double
    private let logged = Locked<[String: (message: String, at: UInt64)]>([:])

    public init(logger: Logger?, repeatAfter: Double = 300, count: (@Sendable (_ reason: String) -> Void)? = nil) {
        self.logger = logger
        self.count = count
        self.repeatAfter = repeatAfter
    }

    /// A failure of `subject`; `metadata` says what was being done.
    public func report(_ subject: String, _ what: String, error: Error, metadata: Logger.Metadata = [:]) {
        let reason = FailureReporter.reason(of: error)
        let message = "\(error)"
        count?(reason)
        let now = monotonicNanoseconds()
        let isNews = logged.withLock { logged -> Bool in
            if let last = logged[subject], last.message == message, Double(now &- last.at) / 1e9 < repeatAfter { return false }
            logged[subject] = (message, now)
            return true
        }
        var fields = metadata
        fields["reason"] = "\(reason)"
        fields["error"] = "\(message)"
        if isNews { logger?.warning("\(what)", metadata: fields) } else { logger?.debug("\(what)", metadata: fields) }
    }

    /// The subject works again: its next failure is news.
    public func recovered(_ subject: String) {
        _ = logged.withLock { $0.removeValue(forKey: subject) }
    }

    /// A short label for a metric: the API server's reason (Forbidden, Conflict, ...), or
    /// what kind of failure it was.
    public static func reason(of error: Error) -> String {
        switch error {
        case let named as NamedFailure: named.reason
        case let status as APIStatus: status.reason.flatMap { $0.isEmpty ? nil : $0 } ?? "HTTP\(status.code)"
        case is TimeoutError: "Timeout"
        case is HTTPClientError: "ConnectionFailed"
        default: "Error"
        }
    }
}

/// An error that names its own reason for the failure metrics (CAExpired, NotCA, ...).
public protocol NamedFailure: Error {
    var reason: String { get }
}
