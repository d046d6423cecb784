import CertgateHTTP

/// What a request parser made of a stream: each request's line and body, then the error.
private struct RequestTranscript: Equatable {
    var requests: [String] = []
    var error: Int?
}

/// The first byte picks where the stream is cut; the rest is the stream. Cutting it
/// elsewhere must not change what is parsed.
func fuzzHTTP1Request(_ bytes: [UInt8]) {
    guard let seed = bytes.first else { return }
    let stream = bytes.dropFirst()
    let limits = HTTPLimits(maxHeaderBytes: 4096, maxBodyBytes: 64 * 1024)
    let whole = parseRequests([stream], limits: limits)
    let cut = parseRequests(pieces(of: stream, seed: seed), limits: limits)
    // A size limit is checked against what has arrived so far, so an error may come sooner
    // when cut; the requests before it must be the same.
    fuzzCheck(whole.requests.starts(with: cut.requests) || cut.requests.starts(with: whole.requests),
              "the requests depend on how the stream was cut: \(whole) vs \(cut)")
    if whole.error == nil && cut.error == nil {
        fuzzCheck(whole == cut, "the requests depend on how the stream was cut: \(whole) vs \(cut)")
    }
}

private func parseRequests(_ pieces: [ArraySlice<UInt8>], limits: HTTPLimits) -> RequestTranscript {
    var parser = HTTP1Parser(limits: limits)
    var transcript = RequestTranscript()
    var head: HTTP1Parser.Head?
    for piece in pieces {
        piece.withUnsafeBytes { parser.append($0) }
        do {
            while let event = try parser.next() {
                switch event {
                case .head(let parsed):
                    head = parsed
                case .body(let body):
                    guard let current = head else {
                        fuzzCheck(false, "a body without a head")
                        return transcript
                    }
                    if case .length(let length) = current.framing {
                        fuzzCheck(body.count == length, "a body of \(body.count) bytes for Content-Length \(length)")
                    }
                    fuzzCheck(body.count <= limits.maxBodyBytes, "a body of \(body.count) bytes past the limit")
                    transcript.requests.append("\(current.method) \(current.path) \(body.count) \(body.hashValue)")
                    head = nil
                }
            }
        } catch {
            fuzzCheck((400..<600).contains(error.status), "parse error with status \(error.status)")
            transcript.error = error.status
            return transcript
        }
    }
    return transcript
}

/// The same for a response stream, as the Kubernetes client reads the API server.
func fuzzHTTP1Response(_ bytes: [UInt8]) {
    guard let seed = bytes.first else { return }
    let stream = bytes.dropFirst()
    let whole = parseResponses([stream])
    let cut = parseResponses(pieces(of: stream, seed: seed))
    fuzzCheck(whole == cut, "the responses depend on how the stream was cut: \(whole) vs \(cut)")
}

private func parseResponses(_ pieces: [ArraySlice<UInt8>]) -> [String] {
    var parser = HTTP1ResponseParser()
    var transcript: [String] = []
    var body: [UInt8] = []
    // One event per call; a stream cannot hold more events than bytes, and a parser that
    // keeps answering without consuming anything would loop here forever.
    var budget = 4 * pieces.reduce(0) { $0 + $1.count } + 16
    for piece in pieces {
        piece.withUnsafeBytes { parser.append($0) }
        do {
            while let event = try parser.next() {
                budget -= 1
                fuzzCheck(budget > 0, "the response parser keeps returning events without consuming bytes")
                switch event {
                case .head(let head):
                    fuzzCheck((200...999).contains(head.status), "status \(head.status) handed out as an answer")
                    transcript.append("head \(head.status)")
                case .body(let piece):
                    fuzzCheck(!piece.isEmpty, "an empty body piece")
                    body += piece
                case .end:
                    transcript.append("body \(body.count) \(body.hashValue)")
                    body = []
                }
            }
        } catch {
            transcript.append("error \(error.status)")
            return transcript
        }
    }
    do {
        if case .end = try parser.peerClosed() { transcript.append("body \(body.count) \(body.hashValue) at close") }
    } catch {
        transcript.append("cut off")
    }
    return transcript
}
