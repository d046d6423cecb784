import CertgateHTTP
import CertgateMetrics
import CertgateNet
import Logging
import Foundation
import Testing

@Suite struct ServerLifetimeTests {
    /// The event loops hold unowned references to a started server; releasing it without
    /// `shutdown(gracePeriod:)` would leave them pointing at freed memory. Debug builds stop
    /// there with the reason instead of failing later somewhere else.
    @Test func aStartedServerReleasedWithoutShutdownStopsADebugBuild() async {
        #if DEBUG
        await #expect(processExitsWith: .failure) {
            let group = try EventLoopGroup(count: 1, namePrefix: "released")
            var server: HTTPServer? = try startedServer(on: group)
            server = nil
        }
        #endif
    }

    @Test func aServerShutDownBeforeReleaseEndsCleanly() async {
        await #expect(processExitsWith: .success) {
            let group = try EventLoopGroup(count: 1, namePrefix: "released")
            var server: HTTPServer? = try startedServer(on: group)
            server?.shutdown(gracePeriod: 0)
            server = nil
            group.stopAndWait()
        }
    }
}

/// A plain-HTTP server on a loopback port, started (exit tests run it in a process of its own).
private func startedServer(on group: EventLoopGroup) throws -> HTTPServer {
    var logger = Logger(label: "test")
    logger.logLevel = .critical
    let server = HTTPServer(
        configuration: HTTPServerConfiguration(name: "released", addresses: [try SocketAddress(host: "127.0.0.1", port: 0)], tls: nil),
        router: Router(), group: group, metrics: ServerMetrics(registry: MetricsRegistry()), logger: logger)
    try server.start()
    return server
}

@Suite struct CloseAfterAnswerTests {
    /// A request read whole with "Connection: close": the server closes right after the
    /// answer, as nginx does, rather than half-closing and waiting for the client's FIN
    /// (a shutdown, an epoll wake and a read per connection, and a connection held open
    /// for as long as the client takes). The client here reads the answer and keeps its
    /// socket open; the server has already let the connection go.
    @Test func aWholeRequestWithConnectionCloseIsClosedAtOnce() throws {
        let server = try TestServer(configure: { $0.timeouts.linger = 5 })
        defer { server.stop() }
        // Reads the answer to its end, then holds the socket open without closing it.
        let script = """
            import socket, ssl, sys, time
            context = ssl.create_default_context(cafile=sys.argv[2])
            raw = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
            tls = context.wrap_socket(raw, server_hostname="localhost")
            tls.sendall(b"GET /healthz HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n")
            answer = b""
            while True:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                answer += chunk
            print(answer.split(b"\\r\\n")[0].decode(), flush=True)
            time.sleep(3)
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script, String(server.port), server.pki.caFile]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        defer { if process.isRunning { process.terminate() } }
        let line = output.fileHandleForReading.availableData
        #expect(String(decoding: line, as: UTF8.self).hasPrefix("HTTP/1.1 200"))
        let deadline = Date().addingTimeInterval(1.5)
        while server.server.openConnections > 0 && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        #expect(server.server.openConnections == 0, "closed without waiting for the client's FIN (linger is 5 s here)")
    }
}

@Suite struct ClosedConnectionTests {
    /// A closed connection leaves its loop's table: before, the loop kept each one (its TLS
    /// session and buffers) until another descriptor happened to get the same number.
    @Test func aClosedConnectionIsNoLongerWatchedByItsLoop() throws {
        let server = try TestServer()
        defer { server.stop() }
        let before = watched(server.group)
        for _ in 0..<5 {
            #expect(try server.curl([server.url("/healthz")]).stdout.hasSuffix("ok\n\n2 200"))
        }
        let deadline = Date().addingTimeInterval(5)
        while server.server.openConnections > 0 && Date() < deadline { usleep(10_000) }
        #expect(server.server.openConnections == 0)
        #expect(watched(server.group) == before, "closed connections still registered with their loops")
    }

    /// The descriptors every loop of `group` watches, each counted on its own thread.
    private func watched(_ group: EventLoopGroup) -> Int {
        group.loops.map { loop in
            let counted = DispatchSemaphore(value: 0)
            nonisolated(unsafe) var count = 0
            loop.execute {
                count = loop.watchedDescriptorCount
                counted.signal()
            }
            counted.wait()
            return count
        }.reduce(0, +)
    }
}

@Suite struct PausedAcceptorTests {
    /// Out of descriptors, an acceptor stops watching its listener and a tick handler
    /// watches it again half a second later. Shut down meanwhile, that tick used to outlive
    /// shutdown and register the listener's number again: closed by then, or by then another
    /// descriptor's. Run in a process of its own, for its descriptor limit.
    @Test func aPausedAcceptorDoesNotWatchItsListenerAfterShutdown() async {
        await #expect(processExitsWith: .success) {
            let registry = MetricsRegistry()
            let group = try EventLoopGroup(count: 1, namePrefix: "paused")
            var logger = Logger(label: "test")
            logger.logLevel = .critical
            let server = HTTPServer(
                configuration: HTTPServerConfiguration(name: "paused", addresses: [try SocketAddress(host: "127.0.0.1", port: 0)], tls: nil),
                router: Router(), group: group, metrics: ServerMetrics(registry: registry), logger: logger)
            let port = try server.start()[0].port
            var limit = rlimit()
            getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
            limit.rlim_cur = 64
            guard setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { exit(2) }
            // Connections to itself until no descriptor is left for the server to accept with.
            var clients: [Int32] = []
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = port.bigEndian
            address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
            while true {
                let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
                guard client >= 0 else { break }
                clients.append(client)
                _ = withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                }
            }
            let deadline = Date().addingTimeInterval(5)
            while !registry.exposition().contains("certgate_http_accept_pauses_total{server=\"paused\"} ") && Date() < deadline {
                usleep(10_000)
            }
            guard registry.exposition().contains("certgate_http_accept_pauses_total{server=\"paused\"} ") else { exit(3) }
            server.shutdown(gracePeriod: 0)
            for client in clients { close(client) }
            // The lowest free number, the closed listener's: what a late tick would watch.
            let reused = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            usleep(800_000)  // past the half-second pause, when the tick would have run
            let counted = DispatchSemaphore(value: 0)
            nonisolated(unsafe) var watched = -1
            group.loops[0].execute {
                watched = group.loops[0].watchedDescriptorCount
                counted.signal()
            }
            counted.wait()
            close(reused)
            group.stopAndWait()
            exit(watched == 0 ? 0 : 1)
        }
    }
}
