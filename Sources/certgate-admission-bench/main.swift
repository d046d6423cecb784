// Benchmark of the admission path without the network: decode an AdmissionReview, judge it
// with the policy, write the answer, as `POST /validate` does once the body is read. Prints
// nanoseconds per review for each payload, best of several rounds (the machine is shared).
// The TLS and HTTP costs around it are measured by scripts/bench.
//
//   certgate-admission-bench POLICY_FILE PAYLOAD.json... [--reviews N]
import CertgateSystem
import CertgateHTTP
import CertgateManifests
import CertgatePKI
import CertgateWebhook
#if canImport(Glibc)
import Glibc
#endif

func printError(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}

var arguments = Array(CommandLine.arguments.dropFirst())
var reviews = 200_000
if let flag = arguments.firstIndex(of: "--reviews"), flag + 1 < arguments.count, let count = Int(arguments[flag + 1]), count > 0 {
    reviews = count
    arguments.removeSubrange(flag...flag + 1)
}
guard arguments.count >= 2 else {
    printError("usage: certgate-admission-bench POLICY_FILE PAYLOAD.json... [--reviews N]")
    exit(2)
}
let policy: Policy
do { policy = try PolicyFile.load(path: arguments[0]) } catch {
    printError("certgate-admission-bench: \(error)")
    exit(1)
}
let webhook = AdmissionWebhook(policy: { policy })
for path in arguments.dropFirst() {
    guard let body = readWholeFile(path) else {
        printError("certgate-admission-bench: cannot read \(path)")
        exit(1)
    }
    let request = HTTPRequest(method: "POST", path: "/validate", headers: HTTPHeaders(), body: body)
    var answerBytes = 0
    var best = UInt64.max
    for _ in 0..<5 {
        let start = monotonicNanoseconds()
        for _ in 0..<reviews / 5 { answerBytes = webhook.handle(request).body.count }
        best = min(best, monotonicNanoseconds() - start)
    }
    let perReview = Double(best) / Double(reviews / 5)
    print("\(path): \(Int(perReview.rounded())) ns per review (\(body.count) bytes in, \(answerBytes) out)")
}
