import CertgateNet
import CertgateSystem
import CertgateHTTP
import CertgateManifests
import CertgateMetrics
import CertgateWebhook
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// The webhook's routes (health, /validate under the example policy) on one event loop,
/// as `certgate serve` builds them, for the connection targets. One per process.
private let loopbackServer: HTTPServer = {
    let policy = try! PolicyFile.parse(PolicyFile.builtInDefault)
    var router = Router()
    router.addHealthRoutes(ReadinessChecks())
    let webhook = AdmissionWebhook(policy: { policy })
    router.add("POST", "/validate") { webhook.handle($0) }
    var configuration = HTTPServerConfiguration(name: "fuzz", addresses: [], tls: nil)
    configuration.limits = HTTPLimits(maxHeaderBytes: 4096, maxBodyBytes: 64 * 1024)
    var logger = Logger(label: "certgate-fuzz")
    logger.logLevel = .critical
    let group = try! EventLoopGroup(count: 1, namePrefix: "fuzz-loop")
    return HTTPServer(configuration: configuration, router: router, group: group,
                      metrics: ServerMetrics(registry: MetricsRegistry()), logger: logger)
}()

private let http2Preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

/// Sends the input as a client would (the HTTP/2 preface first), closes the sending side,
/// and reads until the server closes. The server must close within the time limit: a
/// connection it keeps open after its client has gone is a leak a fuzzer can repeat.
func fuzzConnection(_ bytes: [UInt8], http2: Bool) {
    var pair: [Int32] = [-1, -1]
    guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
        fatalError("socketpair failed: errno \(errno)")
    }
    let (client, server) = (pair[0], pair[1])
    defer { close(client) }
    for descriptor in pair { _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK) }
    loopbackServer.serveCleartext(descriptor: server, speaking: http2 ? .http2 : .http1)

    let input = (http2 ? http2Preface : []) + bytes
    var written = 0
    if input.isEmpty { shutdown(client, Int32(SHUT_WR)) }
    var answer: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 64 * 1024)
    let deadline = monotonicNanoseconds() + 10_000_000_000
    while true {
        var poller = pollfd(fd: client, events: Int16(POLLIN) | (written < input.count ? Int16(POLLOUT) : 0), revents: 0)
        _ = poll(&poller, 1, 100)
        fuzzCheck(monotonicNanoseconds() < deadline,
                  "the server neither finished nor closed the connection within 10 s (\(written) of \(input.count) bytes sent)")
        if written < input.count && poller.revents & Int16(POLLOUT) != 0 {
            let count = input.withUnsafeBytes { send(client, $0.baseAddress! + written, input.count - written, Int32(MSG_NOSIGNAL)) }
            if count > 0 { written += count }
            if count < 0 && errno != EAGAIN && errno != EINTR { written = input.count }  // the server closed first
            if written == input.count { shutdown(client, Int32(SHUT_WR)) }
        }
        if poller.revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
            let count = buffer.withUnsafeMutableBytes { read(client, $0.baseAddress, $0.count) }
            if count == 0 || (count < 0 && errno != EAGAIN && errno != EINTR) { break }
            if count > 0 { answer += buffer[0..<count] }
        }
    }
    if !http2 && !answer.isEmpty {
        fuzzCheck(answer.starts(with: Array("HTTP/1.1 ".utf8)) || answer.starts(with: Array("HTTP/1.0 ".utf8)),
                  "the server's first bytes are not a status line")
    }
}
