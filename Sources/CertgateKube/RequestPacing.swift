import CertgateSystem
import CertgateLocking
import CertgateNet
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// How a client paces its requests and retries the ones the API server turned away, with
/// controller-runtime's and client-go's defaults.
public struct KubeClientLimits: Sendable, Equatable {
    /// Requests a second once the burst is spent (controller-runtime: 20).
    public var qps: Double
    /// Requests that may go at once before pacing starts (controller-runtime: 30).
    public var burst: Int
    /// Retries of one request answered 429 or 5xx with Retry-After (client-go: 10).
    public var maxRetries: Int
    /// The longest one Retry-After is waited for; a longer one is cut to this.
    public var maxRetryAfterSeconds: Double

    public init(qps: Double = 20, burst: Int = 30, maxRetries: Int = 10, maxRetryAfterSeconds: Double = 30) {
        self.qps = qps
        self.burst = burst
        self.maxRetries = maxRetries
        self.maxRetryAfterSeconds = maxRetryAfterSeconds
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

/// A token bucket shared by every request of one client: `burst` at once, then `qps` a
/// second. `wait()` blocks the caller until its request may go.
final class RequestPacer: Sendable {
    private let qps: Double
    private let burst: Double
    private let state: Locked<(tokens: Double, refilled: UInt64)>

    init(qps: Double, burst: Int) {
        self.qps = max(qps, 0.001)
        self.burst = Double(max(burst, 1))
        state = Locked((Double(max(burst, 1)), monotonicNanoseconds()))
    }

    func wait() {
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
}
