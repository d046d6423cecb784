import CertgateKube
import CertgateKubeTesting
import CertgateManifests
import CertgatePKI
import CertgateTestSupport
import Foundation
import Testing

@Suite struct ReconcileCommandTests {
    @Test func serveReconcilesAgainstAClusterAndReleasesItsLeaseOnSIGTERM() throws {
        let api = try TestAPIServer()
        defer { api.stop() }
        let directory = TemporaryDirectory()
        try api.writeKubeconfig(to: directory.file("kubeconfig"))
        let client = try KubeClient(configuration: api.clusterConfiguration())
        _ = try client.create(.pkis, namespace: "app1", Pki(metadata: ObjectMeta(name: "app1-pki", namespace: "app1"),
                                                                    spec: PkiSpec(serviceName: "app1", dnsNames: ["app1.app1.svc"])))

        let server = Process()
        server.executableURL = URL(fileURLWithPath: certgateBinary)
        server.arguments = ["serve", "--address", "127.0.0.1", "--port", String(freePort()), "--metrics-address", "0",
                            "--tls-cert-file", api.pki.certificateFile, "--tls-key-file", api.pki.keyFile,
                            "--kubeconfig", directory.file("kubeconfig"), "--bootstrap-ca", "--leader-elect-resource-namespace", "certgate",
                            "--leader-elect-resource-name", "canary-leader", "--log-format", "json"]
        let log = Pipe()
        server.standardError = log
        server.standardOutput = FileHandle.nullDevice
        try server.run()
        defer { if server.isRunning { server.terminate() } }

        let deadline = Date().addingTimeInterval(30)
        var ready = false
        while !ready && Date() < deadline {
            ready = (try? client.get(.pkis, namespace: "app1", name: "app1-pki", as: Pki.self))?
                .status?.conditions?.contains { $0.type == "Ready" && $0.status == "True" } == true
            if !ready { Thread.sleep(forTimeInterval: 0.1) }
        }
        #expect(ready, "the Pki became Ready through the binary's reconciler")
        #expect(api.object(.secrets, namespace: "app1", name: "app1-pki") != nil)
        #expect(try client.get(.leases, namespace: "certgate", name: "canary-leader", as: Lease.self).spec?.holderIdentity?.isEmpty == false)
        #expect(api.object(.leases, namespace: "certgate", name: "certgate-leader") == nil, "only the Lease it was given")
        // Audit logs see the release calling; managedFields name the writer as before.
        let agents = Set(api.requestLog.map(\.userAgent).filter { $0 != "certgate" })
        let release = try chartAppVersion()
        #expect(agents.count == 1 && agents.first!.hasPrefix("certgate/\(release) (linux/"), "\(agents)")
        let fields = (api.object(.secrets, namespace: "app1", name: "app1-pki")?["metadata"] as? [String: Any])?["managedFields"] as? [[String: Any]]
        #expect(fields?.map { $0["manager"] as? String } == ["certgate"], "\(String(describing: fields))")

        kill(server.processIdentifier, SIGTERM)
        server.waitUntilExit()
        #expect(server.terminationStatus == 0)
        #expect(try client.get(.leases, namespace: "certgate", name: "canary-leader", as: Lease.self).spec?.holderIdentity == "",
                "the Lease is released for the next replica")
        let lines = String(decoding: log.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(lines.contains("\"msg\":\"reconciler started (leader)\""), "\(lines)")
        let starting = lines.split(separator: "\n").first { $0.contains("\"msg\":\"starting\"") } ?? ""
        #expect(starting.contains("\"version\":\"\(release)\""), "\(lines)")
        // Default flags against a server that reports API Priority and Fairness: the log says
        // the limit is automatic, then that the server's fairness made it unnecessary.
        let configured = lines.split(separator: "\n").first { $0.contains("\"msg\":\"cluster configured\"") } ?? ""
        #expect(configured.contains("\"client_rate_limit\":\"automatic: none once the API server reports API Priority and Fairness"), "\(lines)")
        #expect(lines.contains("\"msg\":\"the API server reports API Priority and Fairness: no client-side rate limit\""), "\(lines)")
    }

    @Test func withoutAClusterServeRunsTheWebhookAloneAndSaysSoOnce() throws {
        let home = TemporaryDirectory()
        let pki = try TestPKI(in: home)
        let port = freePort()
        let server = Process()
        server.executableURL = URL(fileURLWithPath: certgateBinary)
        server.arguments = ["serve", "--address", "127.0.0.1", "--port", String(port), "--metrics-address", "0",
                            "--tls-cert-file", pki.certificateFile, "--tls-key-file", pki.keyFile]
        server.environment = childEnvironment(["HOME": home.path, "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin"])
        let log = Pipe()
        server.standardError = log
        server.standardOutput = FileHandle.nullDevice
        try server.run()
        defer { if server.isRunning { server.terminate() } }
        #expect(waitForReadyz(port: port, caFile: pki.caFile) == "ok\n", "ready without a cluster: the webhook serves")
        kill(server.processIdentifier, SIGTERM)
        server.waitUntilExit()
        let lines = String(decoding: log.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(lines.components(separatedBy: "no cluster configuration found; serving the webhook only").count == 2, "\(lines)")
    }

    /// The policy file changes (as a mounted ConfigMap does): every Pki is judged again at
    /// once, not at the next resync ten minutes later.
    @Test func aPolicyChangeRejudgesEveryPkiWithinSeconds() throws {
        let api = try TestAPIServer()
        defer { api.stop() }
        let directory = TemporaryDirectory()
        try api.writeKubeconfig(to: directory.file("kubeconfig"))
        let policy = directory.file("policy.yaml")
        func writePolicy(_ names: String) throws {
            try PolicyFile.builtInDefault.replacingOccurrences(of: "app1: [app1, app2]", with: "app1: \(names)")
                .write(toFile: policy + ".new", atomically: false, encoding: .utf8)
            rename(policy + ".new", policy)
        }
        try writePolicy("[app1, app2]")
        let client = try KubeClient(configuration: api.clusterConfiguration(), limits: KubeClientLimits(qps: 100_000, burst: 100_000))
        let count = 200
        for index in 0..<count {
            _ = try client.create(.pkis, namespace: "app1", Pki(metadata: ObjectMeta(name: "pki-\(index)", namespace: "app1"),
                                                                        spec: PkiSpec(serviceName: "app2", dnsNames: ["app2.app1.svc"])))
        }
        _ = try client.create(.pkis, namespace: "app1", Pki(metadata: ObjectMeta(name: "waiting", namespace: "app1"),
                                                                    spec: PkiSpec(serviceName: "app3", dnsNames: ["app3.app1.svc"])))
        let (server, _) = try startCertgate(["serve", "--address", "127.0.0.1", "--port", String(freePort()), "--metrics-address", "0",
                                             "--tls-cert-file", api.pki.certificateFile, "--tls-key-file", api.pki.keyFile,
                                             "--kubeconfig", directory.file("kubeconfig"), "--bootstrap-ca", "--leader-elect=false",
                                             "--policy", policy, "--certificate-check-interval", "200ms"])
        defer { if server.isRunning { server.terminate() } }

        func reasons() -> [String: Int] {
            var reasons: [String: Int] = [:]
            for index in 0..<count {
                let conditions = ((api.object(.pkis, namespace: "app1", name: "pki-\(index)")?["status"] as? [String: Any])?["conditions"] as? [[String: Any]]) ?? []
                let ready = conditions.first { $0["type"] as? String == "Ready" }
                reasons[ready?["reason"] as? String ?? "none", default: 0] += 1
            }
            return reasons
        }
        func readyReason(_ name: String) -> String? {
            let conditions = ((api.object(.pkis, namespace: "app1", name: name)?["status"] as? [String: Any])?["conditions"] as? [[String: Any]]) ?? []
            return conditions.first { $0["type"] as? String == "Ready" }?["reason"] as? String
        }
        func wait(_ seconds: Double, _ condition: () -> Bool) -> Double? {
            let started = Date()
            while Date().timeIntervalSince(started) < seconds {
                if condition() { return Date().timeIntervalSince(started) }
                Thread.sleep(forTimeInterval: 0.1)
            }
            return nil
        }
        #expect(wait(60) { reasons()["Issued"] == count && readyReason("waiting") == "InvalidSpec" } != nil, "\(reasons())")

        try writePolicy("[app1, app3]")
        let rejudged = wait(30) { reasons()["InvalidSpec"] == count && readyReason("waiting") == "Issued" }
        #expect(rejudged != nil, "every Pki judged again under the new policy: \(reasons()), waiting: \(String(describing: readyReason("waiting")))")
        if let rejudged { print("policy reload: \(count + 1) Pkis judged again in \(String(format: "%.1f", rejudged)) s") }
        kill(server.processIdentifier, SIGTERM)
        server.waitUntilExit()
    }
}

@Suite struct ServeHandoverTests {
    /// SIGTERM to the leader while it is busy: its workers stop and are joined before the
    /// Lease is released, the other replica takes over, and every Pki ends Ready with one
    /// Secret issued once.
    @Test func sigtermDuringABusyTermHandsOverWithNothingLostOrIssuedTwice() throws {
        let api = try TestAPIServer()
        defer { api.stop() }
        let directory = TemporaryDirectory()
        let client = try KubeClient(configuration: api.clusterConfiguration(), limits: KubeClientLimits(qps: 100_000, burst: 100_000))
        let count = 150
        for index in 0..<count {
            _ = try client.create(.pkis, namespace: "app1", Pki(metadata: ObjectMeta(name: "pki-\(index)", namespace: "app1"),
                                                                        spec: PkiSpec(serviceName: "app1", dnsNames: ["pki-\(index).app1.svc"])))
        }
        func replica(_ name: String) throws -> (process: Process, log: Pipe) {
            try api.writeKubeconfig(to: directory.file("\(name).kubeconfig"), token: api.addClient(name))
            return try startCertgate(["serve", "--address", "127.0.0.1", "--port", String(freePort()), "--metrics-address", "0",
                                      "--tls-cert-file", api.pki.certificateFile, "--tls-key-file", api.pki.keyFile,
                                      "--kubeconfig", directory.file("\(name).kubeconfig"), "--bootstrap-ca",
                                      "--leader-elect-resource-namespace", "certgate", "--lease-duration", "4s", "--renew-deadline", "3s",
                                      "--retry-period", "500ms", "--kube-api-qps", "60", "--kube-api-burst", "60"])
        }
        let (first, firstLog) = try replica("a")
        defer { if first.isRunning { first.terminate() } }
        var deadline = Date().addingTimeInterval(30)
        func secretsCreated(by name: String) -> Int {
            api.requestLog.filter { $0.client == name && $0.method == "POST" && $0.path.hasSuffix("/namespaces/app1/secrets") }.count
        }
        while secretsCreated(by: "a") < 15 && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        let (second, _) = try replica("b")
        defer { if second.isRunning { second.terminate() } }
        Thread.sleep(forTimeInterval: 0.5)
        #expect(secretsCreated(by: "a") < count, "still busy when told to stop")
        kill(first.processIdentifier, SIGTERM)
        let firstLines = String(decoding: firstLog.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        first.waitUntilExit()
        #expect(first.terminationStatus == 0, "\(firstLines.suffix(30000))")

        deadline = Date().addingTimeInterval(90)
        func ready() -> Int { (try? client.list(.pkis, namespace: "app1", of: Pki.self).items
            .filter { $0.status?.conditions?.contains { $0.type == "Ready" && $0.status == "True" } == true }.count) ?? 0 }
        while ready() < count && Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }
        #expect(ready() == count, "the second replica finished the work")

        let log = api.requestLog
        let release = try #require(log.last { $0.client == "a" && $0.method == "PUT" && $0.path.contains("/leases/") })
        let lastWrite = try #require(log.last { $0.client == "a" && $0.isWrite && !$0.path.contains("/leases") })
        #expect(lastWrite.time < release.time, "the Lease was released only after the term's last write, not \(lastWrite.method) \(lastWrite.path)")
        #expect(log.filter { $0.client == "b" && $0.isWrite && !$0.path.contains("/leases") }.allSatisfy { $0.time > release.time })
        let creates = log.filter { $0.method == "POST" && $0.path.hasSuffix("/namespaces/app1/secrets") }
        #expect(creates.count == count, "one Secret per Pki, none issued twice: \(creates.count)")
        #expect(log.filter { $0.method == "PATCH" && $0.path.contains("/namespaces/app1/secrets/") }.isEmpty)
        kill(second.processIdentifier, SIGTERM)
        second.waitUntilExit()
    }
}

@Suite struct WallClockStepTests {
    /// Timed waits used to count on CLOCK_REALTIME: with the wall clock an hour ahead of the
    /// kernel's (as after a step the process saw but the wait did not), every sleep of the
    /// control plane stretched by that hour. A replica that does not hold the Lease retries
    /// every retry period; under a preloaded clock_gettime that reports the wall clock an
    /// hour ahead it must go on retrying at that pace.
    @Test func aWallClockAnHourAheadStretchesNoSleep() throws {
        let directory = TemporaryDirectory()
        let shim = directory.file("realtime-ahead.c")
        try """
            #define _GNU_SOURCE
            #include <dlfcn.h>
            #include <sys/time.h>
            #include <time.h>
            int clock_gettime(clockid_t clock, struct timespec *now) {
                static int (*real)(clockid_t, struct timespec *);
                if (!real) real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
                int result = real(clock, now);
                if (result == 0 && clock == CLOCK_REALTIME) now->tv_sec += 3600;
                return result;
            }
            int gettimeofday(struct timeval *now, void *zone) {
                struct timespec spec;
                clock_gettime(CLOCK_REALTIME, &spec);
                now->tv_sec = spec.tv_sec;
                now->tv_usec = spec.tv_nsec / 1000;
                return 0;
            }
            """.write(toFile: shim, atomically: true, encoding: .utf8)
        let library = directory.file("realtime-ahead.so")
        let compiled = try runProcess("cc", ["-shared", "-fPIC", "-o", library, shim, "-ldl"], timeout: 60)
        try #require(compiled.status == 0, "\(compiled.stderr)")

        let api = try TestAPIServer()
        defer { api.stop() }
        let client = try KubeClient(configuration: api.clusterConfiguration())
        _ = try client.create(.leases, namespace: "certgate", Lease(metadata: ObjectMeta(name: "certgate-leader", namespace: "certgate"),
            spec: Lease.Spec(holderIdentity: "elsewhere", leaseDurationSeconds: 3600, acquireTime: nil,
                             renewTime: "2026-01-01T00:00:00.000000Z", leaseTransitions: 0)))
        try api.writeKubeconfig(to: directory.file("kubeconfig"), token: api.addClient("candidate"))
        let (candidate, _) = try startCertgate(["serve", "--address", "127.0.0.1", "--port", String(freePort()), "--metrics-address", "0",
                                                "--tls-cert-file", api.pki.certificateFile, "--tls-key-file", api.pki.keyFile,
                                                "--kubeconfig", directory.file("kubeconfig"), "--leader-elect-resource-namespace", "certgate",
                                                "--retry-period", "200ms"],
                                               environment: ["LD_PRELOAD": library])
        defer { if candidate.isRunning { candidate.terminate() } }
        func leaseReads() -> Int {
            api.requestLog.filter { $0.client == "candidate" && $0.method == "GET" && $0.path.hasSuffix("/leases/certgate-leader") }.count
        }
        #expect(eventually(within: 30) { leaseReads() > 0 ? true : nil } != nil, "the candidate asked for the Lease")
        let first = leaseReads()
        Thread.sleep(forTimeInterval: 3)
        #expect(leaseReads() - first >= 5, "retried every 200 ms of the monotonic clock, not once an hour: \(leaseReads() - first) reads in 3 s")
        kill(candidate.processIdentifier, SIGTERM)
        candidate.waitUntilExit()
    }
}

@Suite struct DescriptorExhaustionTests {
    /// Out of file descriptors, the listener used to wake its loop again and again at full
    /// CPU and log every time. Under `ulimit -n 64` and 120 connections held open, the
    /// server now pauses accepting (bounded CPU, one log line) and serves again once the
    /// connections go.
    @Test func outOfDescriptorsTheServerPausesThenServesAgain() throws {
        let home = TemporaryDirectory()
        let pki = try TestPKI(in: home)
        let port = freePort()
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/bin/sh")
        server.arguments = ["-c", "ulimit -n 64 && exec \"$0\" serve --address 127.0.0.1 --port \(port) --metrics-address 0 "
                            + "--tls-cert-file \"$1\" --tls-key-file \"$2\" --log-format json --event-loops 1",
                            certgateBinary, pki.certificateFile, pki.keyFile]
        server.environment = childEnvironment(["HOME": home.path, "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin"])
        let log = Pipe()
        server.standardError = log
        server.standardOutput = FileHandle.nullDevice
        try server.run()
        defer { if server.isRunning { server.terminate() } }
        #expect(waitForReadyz(port: port, caFile: pki.caFile) == "ok\n")

        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: try which("python3"))
        holder.arguments = ["-c", "import socket,time\ns=[socket.create_connection(('127.0.0.1',\(port))) for _ in range(120)]\ntime.sleep(4)"]
        try holder.run()
        Thread.sleep(forTimeInterval: 1)
        func cpuSeconds() -> Double {
            let stat = (try? String(contentsOfFile: "/proc/\(server.processIdentifier)/stat", encoding: .utf8)) ?? ""
            let fields = stat.split(separator: ")").last?.split(separator: " ") ?? []
            return fields.count > 12 ? (Double(fields[11])! + Double(fields[12])!) / Double(sysconf(Int32(_SC_CLK_TCK))) : 0
        }
        let before = cpuSeconds()
        Thread.sleep(forTimeInterval: 2)
        let spent = cpuSeconds() - before
        #expect(spent < 0.5, "\(spent) s of CPU in 2 s while out of descriptors")
        holder.waitUntilExit()

        #expect(waitForReadyz(port: port, caFile: pki.caFile) == "ok\n", "serving again once the connections went")
        kill(server.processIdentifier, SIGTERM)
        server.waitUntilExit()
        let lines = String(decoding: log.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(lines.components(separatedBy: "out of file descriptors").count == 2, "logged once: \(lines.suffix(2000))")
    }
}

/// Asks https://127.0.0.1:PORT/readyz until it says "ok" or `seconds` pass; its last answer.
func waitForReadyz(port: UInt16, caFile: String, seconds: Double = 20) -> String {
    let deadline = Date().addingTimeInterval(seconds)
    var answer = ""
    while answer != "ok\n" && Date() < deadline {
        answer = (try? runProcess("curl", ["-sS", "--max-time", "2", "--cacert", caFile, "https://127.0.0.1:\(port)/readyz"]).stdout) ?? ""
        if answer != "ok\n" { Thread.sleep(forTimeInterval: 0.1) }
    }
    return answer
}
