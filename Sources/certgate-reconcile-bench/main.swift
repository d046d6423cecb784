// Benchmark of the reconciler as it ships, at its default flags: the test API server (in
// this process, answering with API Priority and Fairness's headers as a 1.28 server does)
// holds N Pkis and their CA; `certgate serve --kubeconfig` (another process) reconciles
// them. Prints, for each N:
//
//   - seconds from certgate's start until every Pki is Ready with its Secret, and the API
//     requests per Pki until then, by verb and resource;
//   - certgate's resident memory then, and its peak;
//   - a restarted certgate's first pass over the N up-to-date Pkis (what a resync costs):
//     requests other than its lists, watches and Lease (target 0), and seconds until done;
//   - seconds for a policy change to be judged for every Pki, from the reload.
//
// With LARGE_SECRETS, the namespace also holds that many unrelated Secrets of 0.9 MB each
// (as Helm release Secrets are), which certgate must not read whole. Loopback only; bounded.
//
//   certgate-reconcile-bench CERTGATE_BINARY [PKIS...] [--large-secrets N]
import CertgateKube
import CertgateKubeTesting
import CertgateManifests
import CertgatePKI
import CertgateTestSupport
import Foundation

var arguments = Array(CommandLine.arguments.dropFirst())
guard !arguments.isEmpty else {
    FileHandle.standardError.write(Data("usage: certgate-reconcile-bench CERTGATE_BINARY [PKIS...] [--large-secrets N]\n".utf8))
    exit(2)
}
let binary = arguments.removeFirst()
var largeSecrets = 0
if let flag = arguments.firstIndex(of: "--large-secrets"), flag + 1 < arguments.count {
    largeSecrets = Int(arguments[flag + 1]) ?? 0
    arguments.removeSubrange(flag...(flag + 1))
}
let sizes = arguments.compactMap(Int.init).isEmpty ? [1000] : arguments.compactMap(Int.init)

/// One `certgate serve` at default flags but for where it listens and what it reads.
final class Certgate {
    let process = Process()
    let metricsPort = freePort()

    init(kubeconfig: String, policy: String, api: TestAPIServer) throws {
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["serve", "--address", "127.0.0.1", "--port", "0", "--metrics-address", "127.0.0.1:\(metricsPort)",
                             "--tls-cert-file", api.pki.certificateFile, "--tls-key-file", api.pki.keyFile,
                             "--kubeconfig", kubeconfig, "--policy", policy, "--namespace", "certgate"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
    }

    func stop() {
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
    }

    /// A field of /proc/PID/status in MiB (VmRSS, VmHWM).
    func memory(_ field: String) -> Double {
        let text = (try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8)) ?? ""
        let line = text.split(separator: "\n").first { $0.hasPrefix(field + ":") } ?? ""
        return (Double(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? 0) / 1024
    }

    /// The sum of a metric's samples on /metrics (nil while it does not answer).
    func metric(_ name: String) -> Double? {
        let result = try? runProcess("/usr/bin/curl", ["-s", "--max-time", "5", "http://127.0.0.1:\(metricsPort)/metrics"])
        guard let text = result?.stdout, result?.status == 0 else { return nil }
        var sum = 0.0
        for line in text.split(separator: "\n") where line.hasPrefix(name + " ") || line.hasPrefix(name + "{") {
            if let last = line.split(separator: " ").last, let value = Double(last) { sum += value }
        }
        return sum
    }
}

func waitFor(_ seconds: Double, every interval: Double, _ condition: () -> Bool) -> Double? {
    let started = Date()
    while Date().timeIntervalSince(started) < seconds {
        if condition() { return Date().timeIntervalSince(started) }
        Thread.sleep(forTimeInterval: interval)
    }
    return condition() ? Date().timeIntervalSince(started) : nil
}

/// Requests certgate sent (by its User-Agent) since the `start`th, as "VERB resource[/one|/status]".
func certgateRequests(_ api: TestAPIServer, since start: Int) -> [String: Int] {
    api.requestCounts(since: start, userAgentPrefix: "certgate/")
}

func describe(_ counts: [String: Int], per count: Int) -> String {
    counts.sorted { $0.value > $1.value }.map { "\($0.key) \(String(format: "%.2f", Double($0.value) / Double(count)))" }.joined(separator: ", ")
}

var failed = false
for count in sizes {
    let api = try TestAPIServer()
    let client = try KubeClient(configuration: api.clusterConfiguration())
    let directory = TemporaryDirectory()
    try api.writeKubeconfig(to: directory.file("kubeconfig"))
    let policy = directory.file("policy.yaml")
    try PolicyFile.builtInDefault.write(toFile: policy, atomically: true, encoding: .utf8)
    // The platform's CA, made before certgate runs (as a cluster has it).
    _ = try client.create(.secrets, namespace: "certgate", try makeCASecret(namespace: "certgate", name: "certgate-ca"))
    let namespaces = (0..<10).map { "team\($0)" }
    var policyText = PolicyFile.builtInDefault
    policyText = policyText.replacingOccurrences(of: "  app1: [app1, app2]", with: namespaces.map { "  \($0): [app1, app2]" }.joined(separator: "\n"))
    try policyText.write(toFile: policy, atomically: true, encoding: .utf8)
    for index in 0..<count {
        let namespace = namespaces[index % namespaces.count]
        _ = try client.create(.pkis, namespace: namespace, Pki(
            metadata: ObjectMeta(name: "pki-\(index)", namespace: namespace),
            spec: PkiSpec(serviceName: "app1", dnsNames: ["pki-\(index).\(namespace).svc"], privateKey: PrivateKeySpec(algorithm: "ECDSA", size: 256))))
    }
    let largeData = Array(repeating: UInt8(ascii: "x"), count: 900 * 1024)
    for index in 0..<largeSecrets {
        _ = try client.create(.secrets, namespace: namespaces[0], Secret(metadata: ObjectMeta(name: "sh.helm.release.v1.app\(index).v1", namespace: namespaces[0]),
                                                                         type: "helm.sh/release.v1", data: ["release": largeData]))
    }

    func readyCount() -> Int {
        (0..<count).filter { index in
            let namespace = namespaces[index % namespaces.count]
            guard let object = api.object(.pkis, namespace: namespace, name: "pki-\(index)"),
                  let conditions = (object["status"] as? [String: Any])?["conditions"] as? [[String: Any]],
                  conditions.contains(where: { $0["type"] as? String == "Ready" && $0["status"] as? String == "True" }) else { return false }
            return api.object(.secrets, namespace: namespace, name: "pki-\(index)") != nil
        }.count
    }
    let poll = count > 2000 ? 0.5 : 0.05
    let limit = Double(max(600, count / 2))

    // 1. New Pkis to Ready.
    let before = api.requestLog.count
    let first = try Certgate(kubeconfig: directory.file("kubeconfig"), policy: policy, api: api)
    let toReady = waitFor(limit, every: poll) { readyCount() == count }
    let issuing = certgateRequests(api, since: before)
    let issuingTotal = issuing.values.reduce(0, +)
    let rss = first.memory("VmRSS")
    let peak = first.memory("VmHWM")
    print("\(count) Pkis in 10 namespaces\(largeSecrets > 0 ? " (and \(largeSecrets) other Secrets of 0.9 MB)" : ""), default flags:")
    print("  seconds to all Ready: \(toReady.map { String(format: "%.1f", $0) } ?? "not within \(Int(limit)) s (\(readyCount()) Ready)")"
          + (toReady.map { String(format: " (%.0f a second)", Double(count) / $0) } ?? ""))
    print("  API requests per Pki: \(String(format: "%.2f", Double(issuingTotal) / Double(count))) (\(describe(issuing, per: count)))")
    print("  resident memory: \(String(format: "%.1f", rss)) MiB once all are Ready, peak \(String(format: "%.1f", peak)) MiB")

    // 2. A policy change: every Pki judged again, counted by certgate's reconcile metric.
    let reloads = first.metric("certgate_policy_reloads_total") ?? 0
    let passes = first.metric("certgate_reconciles_total") ?? 0
    let beforeChange = api.requestLog.count
    try policyText.replacingOccurrences(of: "dnsSuffixes: [.svc, .svc.cluster.local]", with: "dnsSuffixes: [.svc, .svc.cluster.local, .internal]")
        .write(toFile: policy, atomically: true, encoding: .utf8)
    _ = waitFor(30, every: 0.01) { (first.metric("certgate_policy_reloads_total") ?? 0) > reloads }
    let rejudged = waitFor(limit, every: 0.1) { (first.metric("certgate_reconciles_total") ?? 0) >= passes + Double(count) }
    let changeRequests = certgateRequests(api, since: beforeChange).filter { !$0.key.contains("leases") }
    let writesOfTheChange = changeRequests.filter { $0.key != "POST events" }
    print("  policy change: every Pki judged again \(rejudged.map { String(format: "%.1f s", $0) } ?? "not within \(Int(limit)) s") after the reload, "
          + "\(writesOfTheChange.values.reduce(0, +)) requests (and \(changeRequests["POST events"] ?? 0) Events of the issuance still being sent)")
    let peakAfterChange = first.memory("VmHWM")
    first.stop()

    // 3. A new leader's pass over N up-to-date Pkis (what a resync costs, plus the lists).
    let beforeRestart = api.requestLog.count
    let second = try Certgate(kubeconfig: directory.file("kubeconfig"), policy: policy, api: api)
    let allPassed = waitFor(limit, every: 0.1) { (second.metric("certgate_reconciles_total") ?? 0) >= Double(count) }
    Thread.sleep(forTimeInterval: 1)
    let restart = certgateRequests(api, since: beforeRestart)
    let beyondListsAndWatches = restart.filter { !($0.key == "GET pkis" || $0.key == "GET secrets" || $0.key == "GET pods" || $0.key.contains("leases")) }
    print("  a restarted leader's pass over \(count) up-to-date Pkis: \(allPassed.map { String(format: "%.1f s", $0) } ?? "not within \(Int(limit)) s"), "
          + "\(beyondListsAndWatches.values.reduce(0, +)) requests besides lists, watches and the Lease "
          + "(the CA Secret's data, read once per resourceVersion; all: \(describe(restart, per: 1)))")
    let passesBefore = second.metric("certgate_reconciles_total") ?? 0
    let beforeResync = api.requestLog.count
    Thread.sleep(forTimeInterval: 2)
    print("  then, settled: \(Int((second.metric("certgate_reconciles_total") ?? 0) - passesBefore)) passes and "
          + "\(certgateRequests(api, since: beforeResync).filter { !$0.key.contains("leases") }.values.reduce(0, +)) requests in 2 s")
    print("  peak resident memory over the run: \(String(format: "%.1f", max(peakAfterChange, second.memory("VmHWM")))) MiB")
    second.stop()
    api.stop()
    if toReady == nil || rejudged == nil || allPassed == nil { failed = true }
}
exit(failed ? 1 : 0)

/// A self-signed CA in a kubernetes.io/tls Secret, made with openssl as a platform team would.
func makeCASecret(namespace: String, name: String) throws -> Secret {
    let directory = TemporaryDirectory()
    let made = try runProcess("/usr/bin/openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                                                   "-keyout", directory.file("ca.key"), "-out", directory.file("ca.crt"), "-days", "3650",
                                                   "-subj", "/CN=platform CA", "-addext", "basicConstraints=critical,CA:TRUE",
                                                   "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    guard made.status == 0 else { throw NSError(domain: "openssl", code: Int(made.status), userInfo: [NSLocalizedDescriptionKey: made.output]) }
    return Secret(metadata: ObjectMeta(name: name, namespace: namespace), type: "kubernetes.io/tls",
                  data: ["tls.crt": Array(try Data(contentsOf: URL(fileURLWithPath: directory.file("ca.crt")))),
                         "tls.key": Array(try Data(contentsOf: URL(fileURLWithPath: directory.file("ca.key"))))])
}
