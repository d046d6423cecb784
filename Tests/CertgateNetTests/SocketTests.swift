@testable import CertgateNet
import Glibc
import Dispatch
import Synchronization
import Testing

@Suite struct SocketAddressTests {
    @Test func parsesIPv4AndIPv6Literals() throws {
        #expect(try SocketAddress(host: "127.0.0.1", port: 8443).description == "127.0.0.1:8443")
        #expect(try SocketAddress(host: "::1", port: 8443).description == "[::1]:8443")
        #expect(try SocketAddress(host: "::1", port: 1).family == .ipv6)
        #expect(throws: AddressError.self, "brackets are HostPort's to read") { try SocketAddress(host: "[::1]", port: 1) }
    }

    @Test func hostPortReadsWhatFlagsAndURLsWrite() {
        #expect(HostPort("127.0.0.1:9090") == HostPort(host: "127.0.0.1", port: 9090))
        #expect(HostPort("[::1]:9090") == HostPort(host: "::1", port: 9090))
        #expect(HostPort("example.com", defaultPort: 443) == HostPort(host: "example.com", port: 443))
        #expect(HostPort("[fd00::1]", defaultPort: 443) == HostPort(host: "fd00::1", port: 443))
        for refused in ["example.com", "::1:9090", "[::1:9090", "[::1]9090", ":9090", "host:", "host:70000", "host:x", "[]:1"] {
            #expect(HostPort(refused) == nil, "\(refused)")
        }
        #expect(HostPort(httpsURL: "https://[::1]:6443/api?x=1") == HostPort(host: "::1", port: 6443))
        #expect(HostPort(httpsURL: "https://kubernetes.default.svc/") == HostPort(host: "kubernetes.default.svc", port: 443))
        #expect(HostPort(httpsURL: "https://10.0.0.1:8443#frag") == HostPort(host: "10.0.0.1", port: 8443))
        #expect(HostPort(httpsURL: "http://10.0.0.1:8443") == nil)
        #expect(HostPort(httpsURL: "https://:8443/validate") == nil)
        #expect(HostPort(host: "::1", port: 443).description == "[::1]:443")
        #expect(HostPort(host: "::1", port: 443).bracketedHost == "[::1]")
        #expect(HostPort(host: "example.com", port: 80).description == "example.com:80")
    }

    @Test func rejectsHostNamesWithAClearMessage() {
        #expect {
            try SocketAddress(host: "localhost", port: 1)
        } throws: { error in
            "\(error)".contains("\"localhost\" is not a numeric IPv4 or IPv6 address")
        }
    }
}

@Suite struct ListeningSocketTests {
    /// Nagle's algorithm would hold a small answer back for the peer's delayed ACK (40 ms on
    /// Linux); accepted sockets take TCP_NODELAY from the listener.
    @Test(arguments: ["127.0.0.1", "::1"])
    func acceptedConnectionsSendSmallAnswersAtOnce(_ host: String) throws {
        let listener = try ListeningSocket(address: SocketAddress(host: host, port: 0))
        defer { listener.close() }
        let client = socket(host == "::1" ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { Glibc.close(client) }
        let connected = try listener.address.withSockAddr { address, length in connect(client, address, length) }
        #expect(connected == 0)
        var accepted: ConnectedSocket?
        for _ in 0..<100 where accepted == nil {
            accepted = try listener.accept()
            if accepted == nil { usleep(10_000) }
        }
        let descriptor = try #require(accepted).descriptor
        defer { SocketIO.close(descriptor) }
        var noDelay: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        #expect(getsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &noDelay, &length) == 0)
        #expect(noDelay == 1)
    }

    @Test func bindsAnEphemeralPortOnIPv4AndIPv6() throws {
        let v4 = try ListeningSocket(address: SocketAddress(host: "127.0.0.1", port: 0))
        defer { v4.close() }
        #expect(v4.address.port != 0)
        let v6 = try ListeningSocket(address: SocketAddress(host: "::1", port: 0))
        defer { v6.close() }
        #expect(v6.address.port != 0)
        #expect(v6.address.family == .ipv6)
        // Nothing connected yet: a non-blocking accept says so instead of waiting.
        #expect(try v4.accept() == nil)
    }

    @Test func aPortInUseIsReportedWithTheAddress() throws {
        let first = try ListeningSocket(address: SocketAddress(host: "127.0.0.1", port: 0))
        defer { first.close() }
        #expect {
            try ListeningSocket(address: SocketAddress(host: "127.0.0.1", port: first.address.port))
        } throws: { error in
            "\(error)".contains("bind(127.0.0.1:\(first.address.port)) failed: Address already in use")
        }
    }
}

@Suite struct EventLoopTests {
    @Test func runsSubmittedTasksAndTicks() throws {
        let group = try EventLoopGroup(count: 2)
        defer { group.stopAndWait() }
        let ran = Atomic<Int>(0)
        let done = DispatchSemaphore(value: 0)
        for loop in group.loops {
            loop.execute {
                ran.wrappingAdd(1, ordering: .relaxed)
                done.signal()
            }
        }
        #expect(done.wait(timeout: .now() + 5) == .success)
        #expect(done.wait(timeout: .now() + 5) == .success)
        #expect(ran.load(ordering: .relaxed) == 2)

        let ticked = DispatchSemaphore(value: 0)
        let owner = TickOwner()
        group.loops[0].execute {
            group.loops[0].addTickHandler(owner: owner) { ticked.signal() }
        }
        #expect(ticked.wait(timeout: .now() + 5) == .success)
    }
}

final class TickOwner: Sendable {}
