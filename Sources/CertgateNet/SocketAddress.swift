#if canImport(Glibc)
import Glibc
#endif

/// An IPv4 or IPv6 socket address (numeric host and port).
public struct SocketAddress: Sendable, CustomStringConvertible, Equatable {
    public enum Family: Sendable { case ipv4, ipv6 }

    public let family: Family
    /// The numeric host, as given to `inet_pton` (`127.0.0.1`, `::1`).
    public let host: String
    public let port: UInt16

    /// Parses a numeric IPv4 or IPv6 literal, without brackets (``HostPort`` reads them).
    public init(host literal: String, port: UInt16) throws {
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, literal, &v4) == 1 {
            family = .ipv4
        } else if inet_pton(AF_INET6, literal, &v6) == 1 {
            family = .ipv6
        } else {
            throw AddressError(text: literal)
        }
        self.host = literal
        self.port = port
    }

    public var description: String { HostPort(host: host, port: port).description }

    /// Calls `body` with this address as a `sockaddr` of the right length.
    func withSockAddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws -> R) rethrows -> R {
        switch family {
        case .ipv4:
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port.bigEndian
            inet_pton(AF_INET, host, &sin.sin_addr)
            return try withUnsafePointer(to: &sin) {
                try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    try body($0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        case .ipv6:
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = port.bigEndian
            inet_pton(AF_INET6, host, &sin6.sin6_addr)
            return try withUnsafePointer(to: &sin6) {
                try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    try body($0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        }
    }

    /// Reads back an address filled in by `accept`, `getsockname` or `getpeername`.
    init?(storage: sockaddr_storage) {
        var storage = storage
        switch Int32(storage.ss_family) {
        case AF_INET:
            let sin = withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee } }
            var addr = sin.sin_addr
            var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
            inet_ntop(AF_INET, &addr, &text, socklen_t(text.count))
            family = .ipv4
            host = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            port = UInt16(bigEndian: sin.sin_port)
        case AF_INET6:
            let sin6 = withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee } }
            var addr = sin6.sin6_addr
            var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            inet_ntop(AF_INET6, &addr, &text, socklen_t(text.count))
            family = .ipv6
            host = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            port = UInt16(bigEndian: sin6.sin6_port)
        default:
            return nil
        }
    }
}

/// A listen address that is not a numeric IPv4 or IPv6 literal.
public struct AddressError: Error, CustomStringConvertible, Sendable {
    public let text: String
    public var description: String {
        "\"\(text)\" is not a numeric IPv4 or IPv6 address (such as 127.0.0.1, 0.0.0.0, ::1 or ::)"
    }
}
