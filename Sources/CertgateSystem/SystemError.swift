#if canImport(Glibc)
import Glibc
#endif

/// A failed system call: which operation failed and the `errno` it left.
public struct SystemError: Error, CustomStringConvertible, Equatable, Sendable {
    public let operation: String
    public let errno: Int32

    public init(_ operation: String, errno: Int32) {
        self.operation = operation
        self.errno = errno
    }

    public var description: String {
        "\(operation) failed: \(String(cString: strerror(errno))) (errno \(errno))"
    }
}

/// The outcome of a non-blocking call that may have nothing to do yet.
public enum IOResult<Value> {
    case done(Value)
    case wouldBlock
}

package enum Syscall {
    /// Runs `body` until it does not fail with EINTR; throws ``SystemError`` on -1.
    @inline(__always)
    package static func call<T: BinaryInteger>(_ operation: @autoclosure () -> String, _ body: () -> T) throws -> T {
        while true {
            let result = body()
            if result == -1 {
                let code = Glibc.errno
                if code == EINTR { continue }
                throw SystemError(operation(), errno: code)
            }
            return result
        }
    }

    /// Like ``call(_:_:)`` but maps EAGAIN/EWOULDBLOCK to ``IOResult/wouldBlock``.
    @inline(__always)
    package static func nonBlocking<T: BinaryInteger>(_ operation: @autoclosure () -> String, _ body: () -> T) throws -> IOResult<T> {
        while true {
            let result = body()
            if result == -1 {
                let code = Glibc.errno
                if code == EINTR { continue }
                if code == EAGAIN || code == EWOULDBLOCK { return .wouldBlock }
                throw SystemError(operation(), errno: code)
            }
            return .done(result)
        }
    }
}

/// Monotonic time in nanoseconds, for deadlines that must not jump with the wall clock.
@inline(__always)
public func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// Formats seconds since 1970 as UTC with a strftime `format`
/// ("%a, %d %b %Y %H:%M:%S GMT" for HTTP dates, "%Y-%m-%dT%H:%M:%SZ" for RFC 3339).
public func formatUTC(_ seconds: Int, _ format: String) -> String {
    var value = time_t(seconds)
    var parts = tm()
    gmtime_r(&value, &parts)
    var buffer = [CChar](repeating: 0, count: 64)
    let length = strftime(&buffer, buffer.count, format, &parts)
    return String(decoding: buffer.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// The wall-clock time now as RFC 3339 UTC with `fractionDigits` (1 to 9) digits of the
/// second: 3 for log lines, 6 for the API's MicroTime, 9 where two calls must differ.
public func utcTimestampNow(fractionDigits: Int) -> String {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    let digits = min(9, max(1, fractionDigits))
    var divisor = 1
    for _ in digits..<9 { divisor *= 10 }
    let fraction = String(now.tv_nsec / divisor)
    return formatUTC(now.tv_sec, "%Y-%m-%dT%H:%M:%S") + "." + String(repeating: "0", count: digits - fraction.count) + fraction + "Z"
}
