#if canImport(Glibc)
import CertgateSystem
import Glibc
import Synchronization
#endif
internal import CLinux

/// A listening TCP socket, non-blocking, shared by every event loop of a server.
///
/// Each loop registers it with `EPOLLEXCLUSIVE`, so one connection wakes one loop and the
/// kernel spreads accepts across loops without a thread per connection.
public final class ListeningSocket: Sendable {
    public let descriptor: Int32
    /// The bound address (with the real port when port 0 was asked for).
    public let address: SocketAddress

    /// Binds and listens. IPv6 `::` accepts IPv4 too (dual stack); other IPv6 addresses are v6 only.
    public init(address: SocketAddress, backlog: Int32 = 1024) throws {
        Signals.ignoreBrokenPipe()
        let domain = address.family == .ipv4 ? AF_INET : AF_INET6
        let fd = try Syscall.call("socket") { socket(domain, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        do {
            try setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1, "setsockopt(SO_REUSEADDR)")
            // Small answers must leave at once rather than wait for Nagle's timer. Set here,
            // Linux hands it to every accepted socket: one setsockopt less per connection.
            try setOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1, "setsockopt(TCP_NODELAY)")
            if address.family == .ipv6 {
                try setOption(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, address.host == "::" ? 0 : 1, "setsockopt(IPV6_V6ONLY)")
            }
            _ = try address.withSockAddr { sa, len in
                try Syscall.call("bind(\(address))") { bind(fd, sa, len) }
            }
            _ = try Syscall.call("listen(\(address))") { listen(fd, backlog) }
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            _ = try withUnsafeMutablePointer(to: &storage) { ptr in
                try ptr.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                    try Syscall.call("getsockname") { getsockname(fd, sa, &length) }
                }
            }
            self.address = SocketAddress(storage: storage) ?? address
            self.descriptor = fd
        } catch {
            Glibc.close(fd)
            throw error
        }
    }

    /// Accepts one pending connection as a non-blocking socket, or returns nil when none waits
    /// (another loop may have taken it).
    public func accept() throws -> ConnectedSocket? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = try withUnsafeMutablePointer(to: &storage) { ptr in
            try ptr.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                try Syscall.nonBlocking("accept4") {
                    accept4(descriptor, sa, &length, Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue))
                }
            }
        }
        switch result {
        case .wouldBlock:
            return nil
        case .done(let fd):
            return ConnectedSocket(descriptor: fd, peer: SocketAddress(storage: storage))
        }
    }

    /// Stops listening. Connections already accepted are not affected.
    public func close() {
        Glibc.close(descriptor)
    }
}

/// A connection just accepted: the caller owns `descriptor` and must close it.
public struct ConnectedSocket: Sendable {
    public let descriptor: Int32
    public let peer: SocketAddress?
}

/// Plain reads and writes on a descriptor that the caller owns.
public enum SocketIO {
    /// Reads into `buffer`; `.done(0)` means the peer closed its side.
    public static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) throws -> IOResult<Int> {
        try Syscall.nonBlocking("read") { Glibc.read(fd, buffer.baseAddress, buffer.count) }
    }

    /// Writes what the socket takes now; never raises SIGPIPE.
    public static func write(_ fd: Int32, from buffer: UnsafeRawBufferPointer) throws -> IOResult<Int> {
        try Syscall.nonBlocking("send") { Glibc.send(fd, buffer.baseAddress, buffer.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Half-closes the write side so the peer reads end of stream before we close.
    public static func shutdownWrite(_ fd: Int32) {
        _ = Glibc.shutdown(fd, Int32(SHUT_WR))
    }

    /// Shuts both directions, waking any thread blocked on the socket (used to cancel).
    public static func shutdownBoth(_ fd: Int32) {
        _ = Glibc.shutdown(fd, Int32(SHUT_RDWR))
    }

    /// Closes `fd`. Closing a descriptor that is not open means it was closed before, and
    /// the number may by then belong to someone else: counted in ``descriptorsClosedTwice``
    /// so tests can see it, and an assertion in debug builds.
    public static func close(_ fd: Int32) {
        if Glibc.close(fd) == -1 && errno == EBADF {
            closedTwice.wrappingAdd(1, ordering: .relaxed)
            assertionFailure("descriptor \(fd) closed twice")
        }
    }

    /// Descriptors this process closed when they were not open (a double close).
    public static var descriptorsClosedTwice: Int { closedTwice.load(ordering: .relaxed) }
    private static let closedTwice = Atomic<Int>(0)
}

@inline(__always)
func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32, _ what: String) throws {
    var v = value
    _ = try Syscall.call(what) { setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size)) }
}
