import CertgateSystem
@testable import CertgateHTTP
import CertgateCrypto
import CertgateNet
import CertgateTLS
import CertgateTestSupport
import Foundation
import Synchronization
import Testing

func clientContext(_ server: TestServer, withClientCertificate: Bool = false) throws -> TLSClientContext {
    let ca = try Certificate.chain(pem: Array(try String(contentsOfFile: server.pki.caFile, encoding: .utf8).utf8))
    var configuration = TLSClientConfiguration(trustRoots: ca)
    if withClientCertificate {
        configuration.clientCertificateChain = try Certificate.chain(pem: Array(try String(contentsOfFile: server.pki.clientCertificateFile, encoding: .utf8).utf8))
        configuration.clientKey = try PrivateKey(pem: Array(try String(contentsOfFile: server.pki.clientKeyFile, encoding: .utf8).utf8))
    }
    return try TLSClientContext(configuration)
}

@Suite struct HTTPClientTests {
    @Test func reusesOneKeptAliveConnectionForManyRequests() throws {
        let server = try TestServer()
        let client = HTTPClient(configuration: HTTPClientConfiguration(host: "127.0.0.1", port: server.port, tls: try clientContext(server)))
        let health = try client.send(HTTPRequest(method: "GET", path: "/healthz"))
        #expect(health.status == 200)
        #expect(health.body == Array("ok\n".utf8))
        for index in 0..<3 {
            let echoed = try client.send(HTTPRequest(method: "POST", path: "/validate", query: "timeout=\(index)s", body: Array("{\"n\":\(index)}".utf8)))
            #expect(echoed.status == 200)
            #expect(echoed.headers["x-timeout"] == "\(index)s")
            #expect(echoed.body == Array("{\"n\":\(index)}".utf8))
        }
        #expect(try client.send(HTTPRequest(method: "GET", path: "/missing")).status == 404)
        #expect(server.registry.exposition().contains("certgate_tls_handshakes_total{server=\"webhook\",version=\"TLSv1.3\"} 1\n"),
                "five requests, one handshake")
    }

    @Test func aServerSignedByAnotherCAIsRefused() throws {
        let server = try TestServer()
        let other = try TestPKI(in: TemporaryDirectory())
        let client = HTTPClient(configuration: HTTPClientConfiguration(
            host: "127.0.0.1", port: server.port, tls: try TLSClientContext(TLSClientConfiguration(trustRoots: [other.ca]))))
        #expect {
            try client.send(HTTPRequest(method: "GET", path: "/healthz"))
        } throws: { error in
            "\(error)".hasPrefix("TLS handshake with 127.0.0.1:\(server.port) failed (unable to get local issuer certificate)")
        }
    }

    /// A failed handshake closed its socket in the initializer's catch and again in the
    /// deinit of the half-built connection: by then the number could be another thread's.
    @Test func aFailedHandshakeClosesItsDescriptorOnce() throws {
        let server = try TestServer()
        let other = try TestPKI(in: TemporaryDirectory())
        let client = HTTPClient(configuration: HTTPClientConfiguration(
            host: "127.0.0.1", port: server.port, tls: try TLSClientContext(TLSClientConfiguration(trustRoots: [other.ca]))))
        let before = SocketIO.descriptorsClosedTwice
        // Another thread opens descriptors meanwhile and checks that nobody closes them.
        let stop = Atomic<Bool>(false)
        let stolen = Atomic<Int>(0)
        let hammer = try JoinableThread(name: "fd-hammer") {
            while !stop.load(ordering: .relaxed) {
                let fd = open("/dev/null", O_RDONLY)
                guard fd >= 0 else { continue }
                if fcntl(fd, F_GETFD) == -1 { stolen.wrappingAdd(1, ordering: .relaxed) }
                if Glibc.close(fd) == -1 { stolen.wrappingAdd(1, ordering: .relaxed) }
            }
        }
        for _ in 0..<40 {
            #expect(throws: HTTPClientError.self) { try client.send(HTTPRequest(method: "GET", path: "/healthz")) }
        }
        stop.store(true, ordering: .relaxed)
        hammer.join()
        #expect(SocketIO.descriptorsClosedTwice == before, "no descriptor closed twice")
        #expect(stolen.load(ordering: .relaxed) == 0, "no descriptor of another thread closed under it")
    }

    /// A cancel that lands as a stream ends, just before its connection goes back to the
    /// pool, must not shut that connection down: the next request (a POST, not retried)
    /// would fail on it. Before, the stream let go of its cancellation only after pooling.
    @Test func aCancelAsAStreamEndsNeverTouchesThePooledConnection() throws {
        let server = try TestServer(extraRoutes: { router in
            router.add("GET", "/short") { _ in
                let stream = ResponseStream()
                stream.write(Array("piece\n".utf8))
                stream.finish()
                return HTTPResponse(status: 200, headers: ["content-type": "text/plain"], stream: stream)
            }
        })
        let cancellation = StreamCancellation()
        let client = HTTPClient(configuration: HTTPClientConfiguration(host: "127.0.0.1", port: server.port, tls: try clientContext(server)),
                                beforePooling: { cancellation.cancel() })
        try client.stream(HTTPRequest(method: "GET", path: "/short"), cancellation: cancellation, head: { _ in true }, body: { _ in true })
        let answer = try client.send(HTTPRequest(method: "POST", path: "/validate", body: Array("{}".utf8)))
        #expect(answer.status == 200)
        #expect(answer.body == Array("{}".utf8))
    }

    @Test func aCertificateForAnotherNameIsRefused() throws {
        let server = try TestServer()
        try server.pki.writeServingPair(certificateFile: server.pki.certificateFile, keyFile: server.pki.keyFile,
                                        dnsNames: ["other.example"], ipAddresses: [])
        #expect(server.serving.reload() == nil)
        let client = HTTPClient(configuration: HTTPClientConfiguration(host: "127.0.0.1", port: server.port, tls: try clientContext(server)))
        #expect {
            try client.send(HTTPRequest(method: "GET", path: "/healthz"))
        } throws: { error in
            "\(error)".contains("(IP address mismatch)")
        }
    }

    @Test func presentsItsClientCertificateWhenTheServerAsks() throws {
        let server = try TestServer(requireClientCertificate: true)
        let with = HTTPClient(configuration: HTTPClientConfiguration(host: "localhost", port: server.port,
                                                                     tls: try clientContext(server, withClientCertificate: true)))
        #expect(try with.send(HTTPRequest(method: "GET", path: "/healthz")).status == 200)
        let without = HTTPClient(configuration: HTTPClientConfiguration(host: "localhost", port: server.port, tls: try clientContext(server)))
        #expect(throws: (any Error).self) { try without.send(HTTPRequest(method: "GET", path: "/healthz")) }
    }

    @Test func aServerThatNeverAnswersTimesOut() throws {
        // The kernel completes the TCP handshake for a listener that never accepts.
        let silent = try ListeningSocket(address: SocketAddress(host: "127.0.0.1", port: 0))
        defer { silent.close() }
        var configuration = HTTPClientConfiguration(host: "127.0.0.1", port: silent.address.port,
                                                    tls: try TLSClientContext(TLSClientConfiguration()))
        configuration.connectTimeout = 0.3
        let started = Date()
        #expect(throws: TimeoutError("in the TLS handshake with 127.0.0.1:\(silent.address.port)")) {
            try HTTPClient(configuration: configuration).send(HTTPRequest(method: "GET", path: "/"))
        }
        #expect(Date().timeIntervalSince(started) < 3)
    }

    @Test func aKeptAliveConnectionTheServerClosedIsReplacedForIdempotentRequests() throws {
        let server = try TestServer { $0.timeouts.idle = 0.3 }
        let client = HTTPClient(configuration: HTTPClientConfiguration(host: "127.0.0.1", port: server.port, tls: try clientContext(server)))
        #expect(try client.send(HTTPRequest(method: "GET", path: "/healthz")).status == 200)
        Thread.sleep(forTimeInterval: 1.0)  // the server's idle timeout closes the pooled connection
        #expect(try client.send(HTTPRequest(method: "GET", path: "/healthz")).status == 200)
    }
}

@Suite struct ResponseParserTests {
    @Test func decodesChunkedAndLengthDelimitedResponsesSplitAnywhere() throws {
        let wire = Array(("HTTP/1.1 100 Continue\r\n\r\n"
            + "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
            + "7\r\n{\"a\":1}\r\n9;ext=1\r\n{\"b\":22}\n\r\n0\r\nX-Trailer: t\r\n\r\n"
            + "HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\nConnection: close\r\n\r\nnoX").utf8)
        for split in 0..<wire.count {
            var parser = HTTP1ResponseParser()
            var events: [String] = []
            func drain() throws {
                while let event = try parser.next() {
                    switch event {
                    case .head(let head): events.append("head \(head.status) \(head.keepAlive)")
                    case .body(let piece): events.append("body \(String(decoding: piece, as: UTF8.self))")
                    case .end: events.append("end")
                    }
                }
            }
            wire[..<split].withUnsafeBytes { parser.append($0) }
            try drain()
            wire[split...].withUnsafeBytes { parser.append($0) }
            try drain()
            let bodies = events.filter { $0.hasPrefix("body ") }.map { String($0.dropFirst(5)) }.joined()
            #expect(events.filter { !$0.hasPrefix("body ") } == ["head 200 true", "end", "head 404 false", "end"], "split at \(split)")
            #expect(bodies == "{\"a\":1}{\"b\":22}\nnoX", "split at \(split)")
        }
    }

    @Test func aBodyDelimitedByCloseEndsWhenTheServerCloses() throws {
        var parser = HTTP1ResponseParser()
        Array("HTTP/1.0 200 OK\r\n\r\nstream".utf8).withUnsafeBytes { parser.append($0) }
        guard case .head(let head)? = try parser.next() else { Issue.record("no head"); return }
        #expect(!head.keepAlive)
        guard case .body(let piece)? = try parser.next() else { Issue.record("no body"); return }
        #expect(piece == Array("stream".utf8))
        guard case .end = try parser.peerClosed() else { Issue.record("no end"); return }
    }

    private func events(_ text: String) -> [String] {
        var parser = HTTP1ResponseParser()
        Array(text.utf8).withUnsafeBytes { parser.append($0) }
        var seen: [String] = []
        do {
            while let event = try parser.next() {
                switch event {
                case .head(let head): seen.append("head \(head.status)")
                case .body(let body): seen.append("body \(body.count)")
                case .end: seen.append("end")
                }
            }
        } catch {
            seen.append("error \(error.status): \(error.message)")
        }
        return seen
    }

    @Test func aNegativeContentLengthIsAnErrorNotAWaitForever() {
        #expect(events("HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\nhello")
            == ["error 502: invalid Content-Length \"-5\" in a response"])
        #expect(events("HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello").last?.hasPrefix("error 502") == true)
        #expect(events("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello") == ["head 200", "body 5", "end"])
    }

    @Test func theStatusIsExactlyThreeDigits() {
        #expect(events("HTTP/1.1 -12 OK\r\n\r\n") == ["error 502: malformed status line"])
        #expect(events("HTTP/1.1 +20 OK\r\n\r\n") == ["error 502: malformed status line"])
        #expect(events("HTTP/1.1 2000 OK\r\n\r\n") == ["error 502: malformed status line"])
        #expect(events("HTTP/1.1 099 OK\r\n\r\n") == ["error 502: malformed status line"])
        #expect(events("HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n") == ["head 404", "end"])
    }
}
