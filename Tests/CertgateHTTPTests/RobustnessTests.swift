import CertgateHTTP
import CertgateTestSupport
import Dispatch
import Foundation
import Testing

/// One raw HTTP/1.1 exchange and what the client must see.
struct RawCase: CustomTestStringConvertible, Sendable {
    let name: String
    let steps: [String]
    let statusLine: String
    let closes: Bool
    var bodyContains: String? = nil

    var testDescription: String { name }
}

let small = "Host: localhost\\r\\n"

let rawCases: [RawCase] = [
    RawCase(name: "garbage request line", steps: ["send:GARBAGE\\r\\n\\r\\n", "recv"],
            statusLine: "HTTP/1.1 400 Bad Request", closes: true, bodyContains: "malformed request line"),
    RawCase(name: "HTTP/3.0 in the request line", steps: ["send:GET /healthz HTTP/3.0\\r\\n\(small)\\r\\n", "recv"],
            statusLine: "HTTP/1.1 505 HTTP Version Not Supported", closes: true),
    RawCase(name: "no Host header", steps: ["send:GET /healthz HTTP/1.1\\r\\n\\r\\n", "recv"],
            statusLine: "HTTP/1.1 400 Bad Request", closes: true, bodyContains: "missing Host header"),
    RawCase(name: "oversized header", steps: ["send:GET /healthz HTTP/1.1\\r\\n\(small)X-Big: \(String(repeating: "a", count: 5000))\\r\\n\\r\\n", "recv"],
            statusLine: "HTTP/1.1 431 Request Header Fields Too Large", closes: true),
    RawCase(name: "declared body over the limit", steps: ["send:POST /validate HTTP/1.1\\r\\n\(small)Content-Length: 100000\\r\\n\\r\\n", "recv"],
            statusLine: "HTTP/1.1 413 Content Too Large", closes: true),
    RawCase(name: "chunked body over the limit",
            steps: ["send:POST /validate HTTP/1.1\\r\\n\(small)Transfer-Encoding: chunked\\r\\n\\r\\n" + String(repeating: "4000\\r\\n" + String(repeating: "x", count: 16384) + "\\r\\n", count: 5), "recv"],
            statusLine: "HTTP/1.1 413 Content Too Large", closes: true),
    // Once a process-wide trap: 24 hex digits overflowed Int while the size was computed.
    RawCase(name: "a chunk size too large for any integer",
            steps: ["send:POST /validate HTTP/1.1\\r\\n\(small)Transfer-Encoding: chunked\\r\\n\\r\\nffffffffffffffffffffffff\\r\\nx\\r\\n", "recv"],
            statusLine: "HTTP/1.1 413 Content Too Large", closes: true, bodyContains: "chunk size too large"),
    RawCase(name: "sixteen hex digits of chunk size",
            steps: ["send:POST /validate HTTP/1.1\\r\\n\(small)Transfer-Encoding: chunked\\r\\n\\r\\n8000000000000000\\r\\nx\\r\\n", "recv"],
            statusLine: "HTTP/1.1 413 Content Too Large", closes: true, bodyContains: "chunk size too large"),
    RawCase(name: "a chunk size line of extensions past its limit",
            steps: ["send:POST /validate HTTP/1.1\\r\\n\(small)Transfer-Encoding: chunked\\r\\n\\r\\n5;" + String(repeating: "x", count: 1100) + "\\r\\nhello\\r\\n0\\r\\n\\r\\n", "recv"],
            statusLine: "HTTP/1.1 400 Bad Request", closes: true, bodyContains: "chunk size line too long"),
    RawCase(name: "POST without a length", steps: ["send:POST /validate HTTP/1.1\\r\\n\(small)\\r\\n", "recv"],
            statusLine: "HTTP/1.1 411 Length Required", closes: true),
    RawCase(name: "both Content-Length and Transfer-Encoding",
            steps: ["send:POST /validate HTTP/1.1\\r\\n\(small)Content-Length: 3\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n0\\r\\n\\r\\n", "recv"],
            statusLine: "HTTP/1.1 400 Bad Request", closes: true),
    RawCase(name: "an unknown transfer coding", steps: ["send:POST /validate HTTP/1.1\\r\\n\(small)Transfer-Encoding: gzip\\r\\n\\r\\n", "recv"],
            statusLine: "HTTP/1.1 501 Not Implemented", closes: true),
    RawCase(name: "a client that stalls mid-headers", steps: ["send:GET /healthz HTTP/1.1\\r\\nHost: local", "sleep:2.5", "recv"],
            statusLine: "HTTP/1.1 408 Request Timeout", closes: true),
    RawCase(name: "a client that stalls mid-body", steps: ["send:POST /validate HTTP/1.1\\r\\n\(small)Content-Length: 10\\r\\n\\r\\nabc", "sleep:2.5", "recv"],
            statusLine: "HTTP/1.1 408 Request Timeout", closes: true),
    RawCase(name: "a chunked body with an extension",
            steps: ["send:POST /validate HTTP/1.1\\r\\n\(small)Transfer-Encoding: chunked\\r\\n\\r\\n5\\r\\nhello\\r\\n3;x=y\\r\\n!!!\\r\\n0\\r\\n\\r\\n", "recv"],
            statusLine: "HTTP/1.1 200 OK", closes: false, bodyContains: "\r\n\r\nhello!!!"),
    RawCase(name: "Expect: 100-continue",
            steps: ["send:POST /validate HTTP/1.1\\r\\n\(small)Content-Length: 2\\r\\nExpect: 100-continue\\r\\n\\r\\n", "recv", "send:{}", "recv"],
            statusLine: "HTTP/1.1 100 Continue", closes: false, bodyContains: "HTTP/1.1 200 OK"),
    RawCase(name: "an unknown path keeps the connection",
            steps: ["send:GET /nope HTTP/1.1\\r\\n\(small)\\r\\n", "recv"], statusLine: "HTTP/1.1 404 Not Found", closes: false),
    RawCase(name: "pipelined requests, the last asking to close",
            steps: ["send:GET /healthz HTTP/1.1\\r\\n\(small)\\r\\nGET /readyz HTTP/1.1\\r\\n\(small)Connection: close\\r\\n\\r\\n", "recvclose"],
            statusLine: "HTTP/1.1 200 OK", closes: true, bodyContains: "ok\nHTTP/1.1 200 OK"),
    // The second record waits decrypted inside OpenSSL, where epoll cannot see it.
    RawCase(name: "pipelined requests in two TLS records that arrive together",
            steps: ["corked:GET /healthz HTTP/1.1\\r\\n\(small)\\r\\n|GET /readyz HTTP/1.1\\r\\n\(small)Connection: close\\r\\n\\r\\n", "recvclose"],
            statusLine: "HTTP/1.1 200 OK", closes: true, bodyContains: "ok\nHTTP/1.1 200 OK"),
    RawCase(name: "HTTP/1.0 closes unless kept alive",
            steps: ["send:GET /healthz HTTP/1.0\\r\\n\\r\\n", "recvclose"], statusLine: "HTTP/1.0 200 OK", closes: true),
]

@Suite struct MalformedRequestTests {
    @Test(arguments: rawCases)
    func answersAndKeepsServing(_ rawCase: RawCase) throws {
        let server = try TestServer { configuration in
            configuration.limits = HTTPLimits(maxHeaderBytes: 4096, maxBodyBytes: 64 * 1024)
            configuration.timeouts.requestHeader = 1
            configuration.timeouts.requestBody = 1
        }
        let result = try rawClient(["h1"] + server.clientArguments + rawCase.steps)
        let responses = result["responses"] as? String ?? ""
        #expect(responses.hasPrefix(rawCase.statusLine + "\r\n"), "\(result)")
        #expect(result["closed"] as? Bool == rawCase.closes, "\(result)")
        if let expected = rawCase.bodyContains {
            #expect(responses.contains(expected), "\(responses)")
        }
        #expect(try server.stillServes())
    }
}

@Suite struct HTTP2AttackTests {
    @Test func rapidResetGetsGoAwayAndTheServerKeepsServing() throws {
        let server = try TestServer()
        let result = try rawClient(["h2-rapid-reset", "--count", "5000"] + server.clientArguments)
        #expect(result["goaway"] is Int, "\(result)")
        #expect(result["closed"] as? Bool == true)
        #expect((result["sent"] as? Int ?? 0) < 5000, "cut off before the client's loop ran out: \(result)")
        #expect(try server.stillServes())
    }

    @Test func continuationFloodIsCutOff() throws {
        let server = try TestServer()
        let result = try rawClient(["h2-continuation-flood", "--count", "500"] + server.clientArguments)
        // A server without the CONTINUATION limit would wait for END_HEADERS and keep it open.
        #expect(result["closed"] as? Bool == true, "\(result)")
        #expect(try server.stillServes())
    }

    @Test func anOversizedHeaderListGets431() throws {
        let server = try TestServer { $0.limits = HTTPLimits(maxHeaderBytes: 8192, maxBodyBytes: 64 * 1024) }
        let result = try rawClient(["h2-big-headers", "--bytes", "40000"] + server.clientArguments)
        #expect((result["body"] as? String ?? "").contains("\"code\":431"), "\(result)")
        let fine = try rawClient(["h2-big-headers", "--bytes", "2000"] + server.clientArguments)
        #expect(fine["body"] as? String == "ok\n", "\(fine)")
        #expect(try server.stillServes())
    }
}

@Suite struct HTTP2BodyBudgetTests {
    @Test func oneConnectionCannotBufferMoreThanTwiceTheBodyLimit() throws {
        let server = try TestServer { $0.limits = HTTPLimits(maxHeaderBytes: 8192, maxBodyBytes: 64 * 1024) }
        // Four 60 KB bodies in flight at once: the third passes the 128 KB budget.
        let result = try rawClient(["h2-parallel-uploads", "--streams", "4", "--bytes", "60000"] + server.clientArguments)
        let resets = result["reset_codes"] as? [String: Int] ?? [:]
        #expect(resets["5"] == 7, "REFUSED_STREAM, safe to retry: \(result)")
        #expect(result["answered"] as? [Int] == [1, 3], "\(result)")
        #expect(result["closed"] as? Bool == false, "the connection itself carries on")
        #expect(try server.stillServes())
    }
}

@Suite struct ConnectionLimitTests {
    @Test func connectionsPastTheCapAreClosedAtOnce() throws {
        let server = try TestServer { $0.maxConnections = 2 }
        let first = try connectTCP(port: server.port)
        let second = try connectTCP(port: server.port)
        defer { close(second) }
        Thread.sleep(forTimeInterval: 0.3)
        let third = try connectTCP(port: server.port)
        defer { close(third) }
        #expect(readOutcome(third, timeout: 3) == "closed")
        #expect(readOutcome(first, timeout: 0.3) == "open", "connections under the cap wait for their handshake")
        close(first)
        // Under load the loop may take a while to see the close: wait until it has freed the
        // slot (bounded), rather than a fixed pause.
        let deadline = Date().addingTimeInterval(10)
        while !server.registry.exposition().contains("certgate_http_open_connections{server=\"webhook\"} 1\n") && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.02)
        }
        #expect(try server.curl([server.url("/healthz")]).stdout.hasSuffix("2 200"))
        #expect(server.registry.exposition().contains("certgate_http_rejected_connections_total{server=\"webhook\"} 1\n"))
    }
}

@Suite struct GracefulShutdownTests {
    @Test func aRequestInFlightFinishesAndNewConnectionsAreRefused() throws {
        let server = try TestServer()
        let slowRequest = DispatchQueue(label: "slow")
        let resultBox = Shared<[String: Any]?>(nil)
        let done = DispatchSemaphore(value: 0)
        let arguments = ["h1"] + server.clientArguments + [
            "send:POST /validate HTTP/1.1\\r\\nHost: localhost\\r\\nContent-Length: 6\\r\\n\\r\\nabc", "sleep:1.5", "send:def", "recvclose",
        ]
        slowRequest.async {
            resultBox.value = try? rawClient(arguments)
            done.signal()
        }
        // Shut down once the server has read the head and waits for the rest of the body.
        let deadline = Date().addingTimeInterval(10)
        while !server.registry.exposition().contains("certgate_http_requests_in_flight{server=\"webhook\"} 1\n") && Date() < deadline {
            usleep(10_000)
        }
        let started = Date()
        server.server.shutdown(gracePeriod: 10)
        #expect(Date().timeIntervalSince(started) < 5, "shutdown waits for the request, not the whole grace period")
        #expect(done.wait(timeout: .now() + 20) == .success)
        let responses = resultBox.value?["responses"] as? String ?? ""
        #expect(responses.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(String(describing: resultBox.value))")
        #expect(responses.contains("Connection: close\r\n"))
        #expect(responses.hasSuffix("abcdef"))
        #expect(try server.curl([server.url("/healthz")]).status != 0, "no new connections after shutdown")
    }
}

func connectTCP(port: UInt16) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let result = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    if result != 0 { throw POSIXError(.ECONNREFUSED) }
    return fd
}

/// "closed" if the peer closed within `timeout`, "open" if nothing happened, "data" otherwise.
func readOutcome(_ fd: Int32, timeout: Double) -> String {
    var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    guard poll(&descriptor, 1, Int32(timeout * 1000)) > 0 else { return "open" }
    var byte: UInt8 = 0
    return recv(fd, &byte, 1, 0) <= 0 ? "closed" : "data"
}
