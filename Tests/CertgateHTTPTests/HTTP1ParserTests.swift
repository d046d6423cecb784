@testable import CertgateHTTP
import Testing

/// The request-head parser on its own: what a field name may hold, and which fields it acts
/// on whatever their case.
struct HTTP1ParserTests {
    private func parse(_ head: String) -> Result<HTTP1Parser.Head, HTTPParseError> {
        var parser = HTTP1Parser(limits: HTTPLimits())
        Array(head.utf8).withUnsafeBytes { parser.append($0) }
        do throws(HTTPParseError) {
            guard case .head(let parsed)? = try parser.next() else { Issue.record("no head in \(head)"); return .failure(HTTPParseError(status: 0, message: "")) }
            return .success(parsed)
        } catch {
            return .failure(error)
        }
    }

    @Test func aFieldNameTakesExactlyRFC9110TokenCharacters() {
        let token = Set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8)
        for byte in UInt8.min...UInt8.max where byte != UInt8(ascii: ":") && byte != UInt8(ascii: "\n") {
            var bytes = Array("GET / HTTP/1.1\r\nHost: a\r\nx".utf8)
            bytes.append(byte)
            bytes += Array("y: 1\r\n\r\n".utf8)
            var parser = HTTP1Parser(limits: HTTPLimits())
            bytes.withUnsafeBytes { parser.append($0) }
            let accepted: Bool
            do throws(HTTPParseError) { accepted = try parser.next() != nil } catch { accepted = false }
            #expect(accepted == token.contains(byte), "field name x\\x\(String(byte, radix: 16))y")
        }
    }

    @Test func theFieldsThatFrameARequestAreKnownInAnyCase() throws {
        let framed = try parse("POST /validate HTTP/1.1\r\nHOST: a\r\nCoNtEnT-LeNgTh: 5\r\nConnection: Close\r\nContent-Type: application/json\r\n\r\n").get()
        #expect(framed.framing == .length(5))
        #expect(!framed.keepAlive)
        #expect(framed.headers["content-type"] == "application/json")
        #expect(framed.headers.fields.map(\.name) == ["host", "content-length", "connection", "content-type"])

        let chunked = try parse("POST /validate HTTP/1.1\r\nHost: a\r\nTRANSFER-ENCODING: chunked\r\n\r\n").get()
        #expect(chunked.framing == .chunked)
        #expect(throws: HTTPParseError.self) { try parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\ncontent-length: 3\r\n\r\n").get() }
        #expect(throws: HTTPParseError.self) { try parse("GET / HTTP/1.1\r\nhost: a\r\nHost: b\r\n\r\n").get() }
        #expect(try parse("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n").get().expectsContinue)

        // Names one letter off are not the fields: a POST without framing is refused.
        if case .failure(let error) = parse("POST / HTTP/1.1\r\nHost: a\r\ncontent-lengtx: 5\r\ntransfer-encodinh: chunked\r\n\r\n") {
            #expect(error.status == 411)
        } else {
            Issue.record("a POST framed by misspelt fields was accepted")
        }
    }
}
