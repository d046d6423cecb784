import CertgateSystem
import CertgateLocking
import CertgateHTTP
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// How a client paces its requests and retries the ones the API server turned away.
///
/// By default the client paces itself only where the API server cannot: controller-runtime
/// (since v0.21) and cert-manager leave the limit off when the server runs API Priority and
/// Fairness, which queues and sheds load fairly on the server's side and says so with two
/// headers on every answer. Until an answer carries them, and on servers that never send
/// them, the former default (20 a second, bursts of 30) applies.
public struct KubeClientLimits: Sendable, Equatable {
    public enum Pacing: Sendable, Equatable, CustomStringConvertible {
        /// `qps` and `burst` until the API server reports API Priority and Fairness, then none.
        case automatic(qps: Double, burst: Int)
        /// Always this limit (given explicitly).
        case fixed(qps: Double, burst: Int)
        /// No client-side limit.
        case off

        public var description: String {
            switch self {
            case .automatic(let qps, let burst):
                "automatic: none once the API server reports API Priority and Fairness, until then \(formatRate(qps)) requests a second, bursts of \(burst)"
            case .fixed(let qps, let burst): "\(formatRate(qps)) requests a second, bursts of \(burst) (as configured)"
            case .off: "none (turned off)"
            }
        }
    }

    /// controller-runtime's limit before v0.21, for servers without API Priority and Fairness.
    public static let fallbackQPS = 20.0
    public static let fallbackBurst = 30

    public var pacing: Pacing
    /// Retries of one request answered 429 or 5xx with Retry-After (client-go: 10).
    public var maxRetries: Int
    /// The longest one Retry-After is waited for; a longer one is cut to this.
    public var maxRetryAfterSeconds: Double

    public init(pacing: Pacing = .automatic(qps: KubeClientLimits.fallbackQPS, burst: KubeClientLimits.fallbackBurst),
                maxRetries: Int = 10, maxRetryAfterSeconds: Double = 30) {
        self.pacing = pacing
        self.maxRetries = maxRetries
        self.maxRetryAfterSeconds = maxRetryAfterSeconds
    }

    /// A fixed limit of `qps` a second with bursts of `burst`.
    public init(qps: Double, burst: Int, maxRetries: Int = 10, maxRetryAfterSeconds: Double = 30) {
        self.init(pacing: .fixed(qps: qps, burst: burst), maxRetries: maxRetries, maxRetryAfterSeconds: maxRetryAfterSeconds)
    }

    /// The pacing the --kube-api-qps and --kube-api-burst flags ask for (nil: not given):
    /// automatic when neither is given, off when either is negative, else fixed, the one not
    /// given taking its fallback value.
    public static func pacing(qps: Double?, burst: Int?) -> Pacing {
        if qps == nil && burst == nil { return .automatic(qps: fallbackQPS, burst: fallbackBurst) }
        if (qps ?? 0) < 0 || (burst ?? 0) < 0 { return .off }
        return .fixed(qps: qps ?? fallbackQPS, burst: burst ?? fallbackBurst)
    }

    /// Whether an answer asks for the same request again, and after how many seconds.
    /// As client-go: 429 or 5xx with a Retry-After of whole seconds. Only a 429 is retried for
    /// a request that is not idempotent (the server turned it away before acting on it).
    func retryDelay(method: String, status: Int, retryAfter: String?) -> Double? {
        guard status == 429 || status >= 500, let text = retryAfter, let seconds = Int(text), seconds >= 0 else { return nil }
        guard status == 429 || ["GET", "HEAD", "PUT", "DELETE"].contains(method) else { return nil }
        return min(Double(seconds), maxRetryAfterSeconds)
    }
}

private func formatRate(_ qps: Double) -> String {
    qps == qps.rounded() && abs(qps) < 1e15 ? String(Int(qps)) : String(qps)
}

/// What a client learnt from the API server about pacing, told once.
public enum PacingDetection: Sendable, Equatable {
    /// The answers carry API Priority and Fairness's headers: the client-side limit is off.
    case priorityAndFairness
    /// An answer came without them: the fallback limit stays in force.
    case noPriorityAndFairness
}

/// A token bucket shared by every request of one client: `burst` at once, then `qps` a
/// second. `wait()` blocks the caller until its request may go. In automatic mode, the
/// first answer that carries API Priority and Fairness's headers turns it off for good.
final class RequestPacer: Sendable {
    private let qps: Double
    private let burst: Double
    private let isAutomatic: Bool
    private let limiting: Atomic<Bool>
    /// Whether `onDetection` was told that the server does not report APF (once).
    private let toldAbsent = Atomic<Bool>(false)
    private let state: Locked<(tokens: Double, refilled: UInt64)>
    private let onDetection: (@Sendable (PacingDetection) -> Void)?

    /// The header names API Priority and Fairness puts on every answer it handled.
    static let priorityAndFairnessHeaders = ["x-kubernetes-pf-flowschema-uid", "x-kubernetes-pf-prioritylevel-uid"]

    init(_ pacing: KubeClientLimits.Pacing, onDetection: (@Sendable (PacingDetection) -> Void)? = nil) {
        let (qps, burst): (Double, Int)
        switch pacing {
        case .automatic(let rate, let size), .fixed(let rate, let size): (qps, burst) = (rate, size)
        case .off: (qps, burst) = (1, 1)
        }
        self.qps = max(qps, 0.001)
        self.burst = Double(max(burst, 1))
        if case .automatic = pacing { isAutomatic = true } else { isAutomatic = false }
        if case .off = pacing { limiting = Atomic(false) } else { limiting = Atomic(true) }
        self.onDetection = onDetection
        state = Locked((Double(max(burst, 1)), monotonicNanoseconds()))
    }

    /// Whether requests are paced now.
    var isLimiting: Bool { limiting.load(ordering: .relaxed) }

    func wait() {
        guard isLimiting else { return }
        // The token is taken now, possibly into debt, so waiters queue up in order.
        let delay = state.withLock { state -> Double in
            let now = monotonicNanoseconds()
            state.tokens = min(burst, state.tokens + Double(now &- state.refilled) / 1e9 * qps)
            state.refilled = now
            state.tokens -= 1
            return state.tokens >= 0 ? 0 : -state.tokens / qps
        }
        if delay > 0 { usleep(UInt32(min(delay, 60) * 1_000_000)) }
    }

    /// Reads an answer's headers for API Priority and Fairness (automatic mode only).
    func observe(_ headers: HTTPHeaders) {
        guard isAutomatic, isLimiting else { return }
        if RequestPacer.priorityAndFairnessHeaders.contains(where: { headers[$0] != nil }) {
            if limiting.compareExchange(expected: true, desired: false, ordering: .relaxed).exchanged {
                onDetection?(.priorityAndFairness)
            }
        } else if toldAbsent.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged {
            onDetection?(.noPriorityAndFairness)
        }
    }
}
