#if canImport(Glibc)
import CertgateSystem
import Glibc
#endif
internal import CLinux

/// A deadline passed while waiting on a socket.
public struct TimeoutError: Error, CustomStringConvertible, Equatable, Sendable {
    /// What was being waited for ("connecting to 10.0.0.1:443").
    public let operation: String
    public init(_ operation: String) { self.operation = operation }
    public var description: String { "timed out \(operation)" }
}

/// Outgoing connections for clients that wait on their own thread (the Kubernetes client).
public enum ClientSocket {
    /// Resolves `host` and connects to the first address that answers within `timeout`
    /// seconds. Returns a connected, non-blocking socket the caller owns.
    public static func connect(host: String, port: UInt16, timeout: Double) throws -> Int32 {
        Signals.ignoreBrokenPipe()
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0, let list else {
            throw ResolveError(host: host, reason: String(cString: gai_strerror(status)))
        }
        defer { freeaddrinfo(list) }
        let deadline = monotonicNanoseconds() + UInt64(max(0.001, timeout) * 1e9)
        var lastError: Error = ResolveError(host: host, reason: "no address")
        var entry: UnsafeMutablePointer<addrinfo>? = list
        while let current = entry {
            entry = current.pointee.ai_next
            let fd = socket(current.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { lastError = SystemError("socket", errno: errno); continue }
            let target = "\(host):\(port)"
            if Glibc.connect(fd, current.pointee.ai_addr, current.pointee.ai_addrlen) != 0 && errno != EINPROGRESS {
                lastError = SystemError("connect(\(target))", errno: errno)
                Glibc.close(fd)
                continue
            }
            do {
                try SocketIO.wait(fd, writable: true, deadline: deadline, "connecting to \(target)")
                var code: Int32 = 0
                var length = socklen_t(MemoryLayout<Int32>.size)
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &code, &length)
                guard code == 0 else { throw SystemError("connect(\(target))", errno: code) }
                try? setOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1, "setsockopt(TCP_NODELAY)")
                // A peer that vanished (a black-holed route, a node gone) is found within about
                // 90 s even on a connection that only waits, as Go's dialer does for client-go.
                try? setOption(fd, SOL_SOCKET, SO_KEEPALIVE, 1, "setsockopt(SO_KEEPALIVE)")
                try? setOption(fd, Int32(IPPROTO_TCP), TCP_KEEPIDLE, 30, "setsockopt(TCP_KEEPIDLE)")
                try? setOption(fd, Int32(IPPROTO_TCP), TCP_KEEPINTVL, 15, "setsockopt(TCP_KEEPINTVL)")
                try? setOption(fd, Int32(IPPROTO_TCP), TCP_KEEPCNT, 4, "setsockopt(TCP_KEEPCNT)")
                return fd
            } catch {
                lastError = error
                Glibc.close(fd)
                if error is TimeoutError { break }
            }
        }
        throw lastError
    }
}

/// A host name that did not resolve.
public struct ResolveError: Error, CustomStringConvertible, Sendable {
    public let host: String
    public let reason: String
    public var description: String { "cannot resolve \(host): \(reason)" }
}

extension SocketIO {
    /// Waits until `fd` is readable (or writable) or `deadline` (monotonic nanoseconds) passes.
    /// A deadline of `.max` waits for ever.
    public static func wait(_ fd: Int32, writable: Bool, deadline: UInt64, _ operation: @autoclosure () -> String) throws {
        var descriptor = pollfd(fd: fd, events: Int16(writable ? POLLOUT : POLLIN), revents: 0)
        while true {
            let now = monotonicNanoseconds()
            if deadline != .max && now >= deadline { throw TimeoutError(operation()) }
            let milliseconds = deadline == .max ? Int32(-1) : Int32(min(Int64(Int32.max), Int64((deadline - now) / 1_000_000) + 1))
            let ready = poll(&descriptor, 1, milliseconds)
            if ready > 0 { return }
            if ready < 0 && errno != EINTR { throw SystemError("poll", errno: errno) }
        }
    }
}
