// Benchmark of the reconciler as it ships: the test API server (in this process) holds N
// Pkis; `certgate serve --kubeconfig` (another process) reconciles them. Prints the time
// from its start until every Pki is Ready with its Secret, and its resident memory then.
// With LARGE_SECRETS, the namespace also holds that many unrelated Secrets of 0.9 MB each
// (as Helm release Secrets are), which certgate must not read whole.
//
//   certgate-reconcile-bench CERTGATE_BINARY [PKIS] [LARGE_SECRETS]
import CertgateKube
import CertgateKubeTesting
import CertgatePKI
import CertgateTestSupport
import Foundation

let arguments = CommandLine.arguments
guard arguments.count >= 2 else {
    FileHandle.standardError.write(Data("usage: certgate-reconcile-bench CERTGATE_BINARY [PKIS]\n".utf8))
    exit(2)
}
let binary = arguments[1]
let count = arguments.count > 2 ? Int(arguments[2]) ?? 1000 : 1000
let largeSecrets = arguments.count > 3 ? Int(arguments[3]) ?? 0 : 0

let api = try TestAPIServer()
let client = try KubeClient(configuration: api.clusterConfiguration())
let directory = TemporaryDirectory()
try api.writeKubeconfig(to: directory.file("kubeconfig"))

for index in 0..<count {
    _ = try client.create(.pkis, namespace: "app1", Pki(
        metadata: ObjectMeta(name: "pki-\(index)", namespace: "app1"),
        spec: PkiSpec(serviceName: "app1", dnsNames: ["pki-\(index).app1.svc"], privateKey: PrivateKeySpec(algorithm: "ECDSA", size: 256))))
}

let largeData = Array(repeating: UInt8(ascii: "x"), count: 900 * 1024)
for index in 0..<largeSecrets {
    _ = try client.create(.secrets, namespace: "app1", Secret(metadata: ObjectMeta(name: "sh.helm.release.v1.app\(index).v1", namespace: "app1"),
                                                               type: "helm.sh/release.v1", data: ["release": largeData]))
}

let process = Process()
process.executableURL = URL(fileURLWithPath: binary)
process.arguments = ["serve", "--address", "127.0.0.1", "--port", "0", "--metrics-address", "0", "--log-level", "warning",
                     "--tls-cert-file", api.pki.certificateFile, "--tls-key-file", api.pki.keyFile,
                     "--kubeconfig", directory.file("kubeconfig"), "--bootstrap-ca", "--leader-elect=false", "--workers", "4",
                     // The reconciler's own speed, not the client's pacing (20 a second by default).
                     "--kube-api-qps", "100000", "--kube-api-burst", "100000"]
process.standardOutput = FileHandle.nullDevice
process.standardError = FileHandle.nullDevice
let requestsBefore = api.requests.count
let started = Date()
try process.run()

func readyCount() -> Int {
    var ready = 0
    for index in 0..<count {
        guard let object = api.object(.pkis, namespace: "app1", name: "pki-\(index)"),
              let conditions = (object["status"] as? [String: Any])?["conditions"] as? [[String: Any]],
              conditions.contains(where: { $0["type"] as? String == "Ready" && $0["status"] as? String == "True" }),
              api.object(.secrets, namespace: "app1", name: "pki-\(index)") != nil else { continue }
        ready += 1
    }
    return ready
}

let deadline = Date().addingTimeInterval(600)
var ready = 0
while ready < count && Date() < deadline {
    Thread.sleep(forTimeInterval: 0.05)
    ready = readyCount()
}
let elapsed = Date().timeIntervalSince(started)
// Every request certgate sent until all were Ready: lists, watches, gets, writes, Events.
let requestsPerPki = Double(api.requests.count - requestsBefore) / Double(count)
func status(_ field: String) -> String {
    let text = (try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8)) ?? ""
    return text.split(separator: "\n").first { $0.hasPrefix(field + ":") }.map { $0.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.map(String.init) ?? "?" } ?? "?"
}
let rss = (Double(status("VmRSS")) ?? 0) / 1024
let peak = (Double(status("VmHWM")) ?? 0) / 1024
process.terminate()
process.waitUntilExit()
api.stop()
print("pkis: \(count), other Secrets of 0.9 MB: \(largeSecrets), ready: \(ready), seconds to all Ready: \(String(format: "%.2f", elapsed)), certgate RSS MiB: \(String(format: "%.1f", rss)) (peak \(String(format: "%.1f", peak))), API requests per Pki: \(String(format: "%.2f", requestsPerPki))")
exit(ready == count ? 0 : 1)
