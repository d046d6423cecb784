import CertgateCrypto
import CertgateHTTP
import CertgateTestSupport
import Foundation
import Testing

/// An AdmissionReview body as the API server sends it.
let admissionBody = try! String(contentsOfFile: "\(repositoryRoot)/examples/admissionreview-app1.json", encoding: .utf8)

@Suite struct ClientInteropTests {
    @Test func curlOverHTTP1PostsWithTheAPIServersQuery() throws {
        let server = try TestServer()
        let bodyFile = server.directory.file("body.json")
        try admissionBody.write(toFile: bodyFile, atomically: true, encoding: .utf8)
        let result = try server.curl(["--http1.1", "-i", "-X", "POST", "-H", "Content-Type: application/json",
                                      "--data-binary", "@\(bodyFile)", server.url("/validate?timeout=10s")])
        #expect(result.stdout.hasSuffix(admissionBody + "\n1.1 200"), "\(result.output)")
        #expect(result.stdout.contains("X-Timeout: 10s\r\n"))
        #expect(result.stdout.contains("Content-Length: \(admissionBody.utf8.count)\r\n"))
        #expect(result.stdout.contains("X-Protocol: HTTP/1.1\r\n"))
    }

    @Test func curlOverHTTP2() throws {
        let server = try TestServer()
        let result = try server.curl(["--http2", "-i", "-X", "POST", "--data-binary", "{\"x\":1}", server.url("/validate?timeout=5s")])
        #expect(result.stdout.hasSuffix("{\"x\":1}\n2 200"), "\(result.output)")
        #expect(result.stdout.contains("x-timeout: 5s\r\n"))
        #expect(result.stdout.contains("x-protocol: HTTP/2\r\n"))
    }

    /// Sixteen megabytes read at eight per second: the answer outgrows the connection's queue
    /// (reading pauses), the socket's buffers and what TLS may hold encrypted (it waits for
    /// the socket), and still arrives whole.
    @Test(arguments: ["--http1.1", "--http2"])
    func aLargeAnswerReadSlowlyArrivesWhole(_ version: String) throws {
        let body = (0..<(16 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 13) }
        let server = try TestServer(extraRoutes: { router in
            router.add("GET", "/large") { _ in HTTPResponse(status: 200, headers: ["content-type": "application/octet-stream"], body: body) }
        })
        let file = server.directory.file("large.bin")
        let result = try server.curl([version, "--limit-rate", "8M", "-o", file, server.url("/large")])
        #expect(result.stdout.hasSuffix(version == "--http2" ? "2 200" : "1.1 200"), "\(result.output)")
        #expect(FileManager.default.contents(atPath: file).map(Array.init) == body)
        #expect(try server.stillServes())
    }

    @Test func unknownPathsAndMethodsGetJSONErrors() throws {
        let server = try TestServer()
        let missing = try server.curl([server.url("/nope")])
        #expect(missing.stdout == "{\"code\":404,\"reason\":\"Not Found\",\"message\":\"no handler for /nope\"}\n\n2 404")
        let wrongMethod = try server.curl(["--http1.1", "-i", "-X", "DELETE", server.url("/healthz")])
        #expect(wrongMethod.stdout.hasSuffix("1.1 405"))
        #expect(wrongMethod.stdout.contains("Allow: GET\r\n"))
    }

    @Test(arguments: ["--http1.1", "--http2"])
    func headAnswersWithTheLengthOfGETAndNoBody(_ version: String) throws {
        let server = try TestServer()
        let result = try server.curl([version, "-sS", "-I", server.url("/healthz")])
        #expect(result.stdout.lowercased().contains("content-length: 3\r\n"), "\(result.output)")
        #expect(result.stdout.hasSuffix("\r\n\r\n\n\(version == "--http2" ? "2" : "1.1") 200"), "\(result.output)")
    }

    @Test func servesIPv6() throws {
        let server = try TestServer(host: "::1")
        let result = try server.curl(["-g", server.url("/healthz")])
        #expect(result.stdout.hasSuffix("ok\n\n2 200"), "\(result.output)")
    }

    @Test func tlsVersionsBelow12AreRefusedAnd12And13Accepted() throws {
        let server = try TestServer()
        let connect = ["s_client", "-connect", "127.0.0.1:\(server.port)", "-CAfile", server.pki.caFile, "-servername", "localhost"]
        // SECLEVEL=0 lets the client offer TLS 1.1, so a refusal can only come from the server.
        let old = try runProcess("openssl", connect + ["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"], input: "", timeout: 20)
        #expect(old.status != 0)
        #expect(old.output.contains("alert protocol version"), "\(old.output)")

        let tls12 = try runProcess("openssl", connect + ["-tls1_2"], input: "", timeout: 20)
        #expect(tls12.stdout.contains("New, TLSv1.2, Cipher is ECDHE-ECDSA-AES"), "\(tls12.output)")
        #expect(tls12.stdout.contains("Verify return code: 0 (ok)"))

        // openssl offers AES-256-GCM first; the server's order (AES-128-GCM first) decides.
        let tls13 = try runProcess("openssl", connect + ["-tls1_3"], input: "", timeout: 20)
        #expect(tls13.stdout.contains("New, TLSv1.3, Cipher is TLS_AES_128_GCM_SHA256"), "\(tls13.output)")
        for suite in ["TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"] {
            let alone = try runProcess("openssl", connect + ["-tls1_3", "-ciphersuites", suite], input: "", timeout: 20)
            #expect(alone.stdout.contains("New, TLSv1.3, Cipher is \(suite)"), "\(alone.output)")
        }
        let ccm = try runProcess("openssl", connect + ["-tls1_3", "-ciphersuites", "TLS_AES_128_CCM_SHA256"], input: "", timeout: 20)
        #expect(ccm.status != 0, "no TLS 1.3 suite beyond OpenSSL's three defaults")

        let weak = try runProcess("openssl", connect + ["-tls1_2", "-cipher", "AES128-SHA"], input: "", timeout: 20)
        #expect(weak.status != 0, "a suite without forward secrecy is refused")
        #expect(try server.stillServes())
    }

    @Test(arguments: [("h2", "ALPN protocol: h2"), ("http/1.1", "ALPN protocol: http/1.1"), ("spdy/3", "No ALPN negotiated")])
    func alpnPrefersH2AndFallsBackToHTTP11(_ offered: String, _ expected: String) throws {
        let server = try TestServer()
        let result = try runProcess("openssl", ["s_client", "-connect", "127.0.0.1:\(server.port)", "-CAfile", server.pki.caFile,
                                                "-alpn", offered], input: "", timeout: 20)
        #expect(result.stdout.contains(expected), "\(result.output)")
    }

    @Test func h2loadMultiplexesManyStreams() throws {
        let server = try TestServer()
        let bodyFile = server.directory.file("body.json")
        try admissionBody.write(toFile: bodyFile, atomically: true, encoding: .utf8)
        let result = try runProcess("h2load", ["-n", "600", "-c", "3", "-m", "20", "-d", bodyFile, server.url("/validate?timeout=10s")], timeout: 60)
        #expect(result.stdout.contains("Application protocol: h2"), "\(result.output)")
        #expect(result.stdout.contains("600 succeeded, 0 failed, 0 errored"))
        #expect(result.stdout.contains("status codes: 600 2xx"))

        let h1 = try runProcess("h2load", ["--h1", "-n", "300", "-c", "3", "-d", bodyFile, server.url("/validate")], timeout: 60)
        #expect(h1.stdout.contains("Application protocol: http/1.1"), "\(h1.output)")
        #expect(h1.stdout.contains("300 succeeded, 0 failed, 0 errored"))

        let nghttp = try runProcess("nghttp", ["-nv", "-m", "10", server.url("/healthz")], timeout: 30)
        #expect(nghttp.status == 0, "\(nghttp.output)")
        #expect(nghttp.stdout.contains("[SETTINGS_MAX_CONCURRENT_STREAMS(0x03):100]"), "streams are bounded: \(nghttp.stdout)")
        #expect(nghttp.stdout.components(separatedBy: ":status: 200").count - 1 == 10)
    }

    /// A request whose body is followed by trailers ends with END_STREAM on the trailers'
    /// HEADERS frame, not on DATA: it used to wait for an end that never came.
    @Test func anHTTP2RequestThatEndsWithTrailersIsAnswered() throws {
        let server = try TestServer()
        let bodyFile = server.directory.file("body.json")
        try #"{"n":1}"#.write(toFile: bodyFile, atomically: true, encoding: .utf8)
        let result = try runProcess("nghttp", ["-v", "-t", "5", "-d", bodyFile, "--trailer", "x-checksum: 42", server.url("/validate")], timeout: 30)
        #expect(result.stdout.contains("recv (stream_id=13) :status: 200"), "\(result.output)")
        #expect(result.stdout.contains(#"{"n":1}"#), "the body came back")
    }

    @Test func aBodyLargerThanTheFlowControlWindowsGoesBothWays() throws {
        // 3 MiB each way: more than the 1 MiB windows the server opens and than curl's own.
        let server = try TestServer { $0.limits.maxBodyBytes = 4 << 20 }
        let bodyFile = server.directory.file("big.json")
        let big = "\"" + String(repeating: "0123456789abcdef", count: (3 << 20) / 16) + "\""
        try big.write(toFile: bodyFile, atomically: true, encoding: .utf8)
        for version in ["--http2", "--http1.1"] {
            let result = try server.curl([version, "-X", "POST", "--data-binary", "@\(bodyFile)", server.url("/validate")])
            let status = version == "--http2" ? "\n2 200" : "\n1.1 200"
            #expect(result.stdout.hasSuffix(status), "\(version): \(result.stderr)")
            #expect(result.stdout.dropLast(status.count) == big[...], "\(version): the body came back whole")
        }
    }

    @Test func theMetricsCountRequestsHandshakesAndFailures() throws {
        let server = try TestServer()
        _ = try server.curl(["--http2", "-X", "POST", "--data-binary", "{}", server.url("/validate")])
        _ = try server.curl(["--http1.1", "-X", "POST", "--data-binary", "{}", server.url("/validate")])
        _ = try server.curl([server.url("/missing")])
        _ = try runProcess("openssl", ["s_client", "-connect", "127.0.0.1:\(server.port)", "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"], input: "", timeout: 20)
        let text = server.registry.exposition()
        #expect(text.contains("certgate_http_requests_total{server=\"webhook\",path=\"/validate\",code=\"200\"} 2\n"), "\(text)")
        #expect(text.contains("certgate_http_requests_total{server=\"webhook\",path=\"other\",code=\"404\"} 1\n"))
        #expect(text.contains("certgate_http_request_duration_seconds_count{server=\"webhook\",path=\"/validate\",code=\"200\"} 2\n"))
        #expect(text.contains("certgate_tls_handshakes_total{server=\"webhook\",version=\"TLSv1.3\"} 3\n"))
        #expect(text.contains("certgate_tls_handshake_failures_total{server=\"webhook\"} 1\n"))
        #expect(text.contains("certgate_http_requests_in_flight{server=\"webhook\"} 0\n"))
    }
}

@Suite struct CertificateTests {
    @Test func rotationKeepsOpenConnectionsAndNewHandshakesSeeTheNewSerial() throws {
        let server = try TestServer()
        let oldSerial = server.serving.context!.leaf.serialNumberHex

        let client = Process()
        client.executableURL = URL(fileURLWithPath: try which("python3"))
        client.arguments = ["\(repositoryRoot)/Tests/Clients/rawclient.py", "rotation"] + server.clientArguments
        let input = Pipe()
        let output = Pipe()
        client.standardInput = input
        client.standardOutput = output
        try client.run()
        let reader = LineReader(output.fileHandleForReading)
        let first = try JSONSerialization.jsonObject(with: Data(reader.nextLine(timeout: 20).utf8)) as! [String: Any]
        #expect(first["first"] as? String == "HTTP/1.1 200 OK")
        #expect(first["serial"] as? String == oldSerial)

        let newSerial = try server.pki.writeServingPair(certificateFile: server.pki.certificateFile, keyFile: server.pki.keyFile)
        #expect(server.serving.reload() == nil)
        #expect(server.serving.context!.leaf.serialNumberHex == newSerial)

        input.fileHandleForWriting.write(Data("go\n".utf8))
        let second = try JSONSerialization.jsonObject(with: Data(reader.nextLine(timeout: 20).utf8)) as! [String: Any]
        client.waitUntilExit()
        #expect(second["second"] as? String == "HTTP/1.1 200 OK", "the connection opened before the rotation still works")
        #expect(second["closed"] as? Bool == false)

        let fresh = try runProcess("openssl", ["s_client", "-connect", "127.0.0.1:\(server.port)", "-CAfile", server.pki.caFile], input: "", timeout: 20)
        let pem = fresh.stdout.components(separatedBy: "-----BEGIN CERTIFICATE-----").dropFirst().first
            .map { "-----BEGIN CERTIFICATE-----" + $0.components(separatedBy: "-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n" }
        #expect(try Certificate(pem: Array((pem ?? "").utf8)).serialNumberHex == newSerial)
    }

    @Test func aClientCAMakesClientCertificatesRequired() throws {
        let server = try TestServer(requireClientCertificate: true)
        let without = try server.curl([server.url("/healthz")])
        #expect(without.status != 0, "\(without.output)")
        #expect(!without.stdout.contains("200"))

        let with = try server.curl(["--cert", server.pki.clientCertificateFile, "--key", server.pki.clientKeyFile, server.url("/healthz")])
        #expect(with.stdout.hasSuffix("ok\n\n2 200"), "\(with.output)")

        // A certificate from a CA the server does not trust is refused too.
        let wrong = try server.curl(["--cert", server.pki.certificateFile, "--key", server.pki.keyFile, server.url("/healthz")])
        #expect(wrong.status != 0)
    }
}

/// Reads lines from a pipe with a time limit.
final class LineReader {
    private let handle: FileHandle
    private var buffer = Data()

    init(_ handle: FileHandle) { self.handle = handle }

    func nextLine(timeout: Double) throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let newline = buffer.firstIndex(of: 0x0A) {
                let line = buffer[buffer.startIndex..<newline]
                buffer.removeSubrange(buffer.startIndex...newline)
                return String(decoding: line, as: UTF8.self)
            }
            let chunk = handle.availableData
            if chunk.isEmpty { break }
            buffer.append(chunk)
        }
        throw ClientFailure(output: String(decoding: buffer, as: UTF8.self))
    }
}
