import CertgateHTTP
import CertgateTestSupport
import Dispatch
import Foundation
import Testing

/// Routes GET /watch to a stream that writes `pieces` 50 ms apart from a thread of its own,
/// then finishes; `producerSaw` records whether each write was accepted. Not on Dispatch's
/// pool: in one loaded ThreadSanitizer run, curl got the head, then waited out its ten
/// seconds for a body while tests that block held that pool (every test of the run was
/// reported at the same moment, 62 s in).
func streamingServer(pieces: [String], finishes: Bool = true, producerSaw: Shared<[Bool]>? = nil) throws -> TestServer {
    try TestServer(extraRoutes: { router in
        router.add("GET", "/watch") { _ in
            let stream = ResponseStream()
            Thread.detachNewThread {
                for piece in pieces {
                    Thread.sleep(forTimeInterval: 0.05)
                    let accepted = stream.write(Array(piece.utf8))
                    producerSaw?.update { $0.append(accepted) }
                }
                if finishes { stream.finish() }
            }
            return HTTPResponse(status: 200, headers: ["content-type": "application/json"], stream: stream)
        }
    })
}

@Suite struct StreamingTests {
    @Test func piecesArriveInOrderAndTheConnectionIsKeptAfterwards() throws {
        let server = try streamingServer(pieces: ["{\"n\":1}\n", "{\"n\":2}\n", "{\"n\":3}\n"])
        let client = HTTPClient(configuration: HTTPClientConfiguration(host: "127.0.0.1", port: server.port, tls: try clientContext(server)))
        var received = ""
        var headers = HTTPHeaders()
        try client.stream(HTTPRequest(method: "GET", path: "/watch")) { head in
            headers = head.headers
            return true
        } body: { piece in
            received += String(decoding: piece, as: UTF8.self)
            return true
        }
        #expect(received == "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n")
        #expect(headers["transfer-encoding"] == "chunked")
        #expect(try client.send(HTTPRequest(method: "GET", path: "/healthz")).status == 200)
        #expect(server.registry.exposition().contains("certgate_tls_handshakes_total{server=\"webhook\",version=\"TLSv1.3\"} 1\n"),
                "the same connection served the next request")
    }

    @Test(arguments: ["--http1.1", "--http2"])
    func curlReceivesTheWholeStream(_ version: String) throws {
        let server = try streamingServer(pieces: ["a\n", "b\n", "c\n"])
        let result = try server.curl([version, "-N", server.url("/watch")])
        #expect(result.stdout == "a\nb\nc\n\n\(version == "--http2" ? "2" : "1.1") 200", "\(result.output)")
    }

    @Test func aClientThatLeavesCancelsTheStream() throws {
        let saw = Shared<[Bool]>([])
        let server = try streamingServer(pieces: Array(repeating: "x\n", count: 40), finishes: false, producerSaw: saw)
        let client = HTTPClient(configuration: HTTPClientConfiguration(host: "127.0.0.1", port: server.port, tls: try clientContext(server)))
        try client.stream(HTTPRequest(method: "GET", path: "/watch")) { _ in true } body: { _ in false }
        let deadline = Date().addingTimeInterval(10)
        while saw.value.last != false && Date() < deadline { usleep(10_000) }
        let accepted = saw.value
        #expect(accepted.first == true)
        #expect(accepted.last == false, "the producer learns that nobody listens: \(accepted)")
    }

    @Test func shutdownEndsAStreamInProgress() throws {
        let server = try streamingServer(pieces: ["first\n"] + Array(repeating: "more\n", count: 100), finishes: false)
        let done = DispatchSemaphore(value: 0)
        let received = Shared("")
        let client = HTTPClient(configuration: HTTPClientConfiguration(host: "127.0.0.1", port: server.port, tls: try clientContext(server)))
        DispatchQueue.global().async {
            try? client.stream(HTTPRequest(method: "GET", path: "/watch")) { _ in true } body: { piece in
                received.update { $0 += String(decoding: piece, as: UTF8.self) }
                return true
            }
            done.signal()
        }
        let flowing = Date().addingTimeInterval(10)
        while !received.value.hasPrefix("first\n") && Date() < flowing { Thread.sleep(forTimeInterval: 0.02) }
        let started = Date()
        server.server.shutdown(gracePeriod: 10)
        #expect(Date().timeIntervalSince(started) < 3, "the stream ends at once rather than holding the grace period")
        #expect(done.wait(timeout: .now() + 5) == .success)
        #expect(received.value.hasPrefix("first\n"))
    }
}
