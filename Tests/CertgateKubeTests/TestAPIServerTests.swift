import CertgateLocking
import CertgateHTTP
import CertgateKube
import CertgateNet
import CertgateKubeTesting
import CertgatePKI
import Foundation
import Synchronization
import Testing

func samplePki(_ name: String, labels: [String: String]? = nil) -> Pki {
    Pki(metadata: ObjectMeta(name: name, namespace: "app1", labels: labels),
                spec: PkiSpec(serviceName: "app1", dnsNames: ["\(name).app1.svc"], duration: "2160h"))
}

/// Collects watch events on a thread of its own until stopped or the stream ends.
final class WatchRecorder: @unchecked Sendable {
    private let lock = NSLock()
    private var events: [String] = []
    private var failure: Error?
    private var stopped = false
    private let finished = DispatchSemaphore(value: 0)

    init(_ client: KubeClient, resourceVersion: String?) {
        DispatchQueue.global().async { [self] in
            do {
                try client.watch(.pkis, namespace: "app1", options: ListOptions(resourceVersion: resourceVersion), of: Pki.self) { event in
                    let text: String
                    switch event {
                    case .added(let pki): text = "ADDED \(pki.metadata.name!)"
                    case .modified(let pki): text = "MODIFIED \(pki.metadata.name!) gen=\(pki.metadata.generation ?? 0)"
                    case .deleted(let pki): text = "DELETED \(pki.metadata.name!)"
                    case .bookmark: text = "BOOKMARK"
                    case .error(let status): text = "ERROR \(status.code)"
                    }
                    return lock.withLock {
                        events.append(text)
                        return !stopped
                    }
                }
            } catch {
                lock.withLock { failure = error }
            }
            finished.signal()
        }
    }

    var seen: [String] { lock.withLock { events } }
    var error: Error? { lock.withLock { failure } }

    /// Waits until `predicate` holds for the events seen, up to 10 seconds.
    func wait(until predicate: ([String]) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if predicate(seen) { return true }
            Thread.sleep(forTimeInterval: 0.01)
        }
        return false
    }

    func waitForEnd() -> Bool { finished.wait(timeout: .now() + 10) == .success }
}

@Suite struct TestAPIServerTests {
    @Test func objectsLiveAndChangeAsOnARealAPIServer() throws {
        let api = try TestAPIServer()
        defer { api.stop() }
        let client = try KubeClient(configuration: api.clusterConfiguration())

        let created = try client.create(.pkis, namespace: "app1", samplePki("app1-pki"))
        #expect(created.metadata.generation == 1)
        #expect(created.metadata.uid?.count == 36)
        let firstVersion = created.metadata.resourceVersion!
        #expect { try client.create(.pkis, namespace: "app1", samplePki("app1-pki")) } throws: { error in
            (error as? APIStatus)?.isAlreadyExists == true && "\(error)" == "409 AlreadyExists: pkis.certgate.dev \"app1-pki\" already exists"
        }

        var changed = created
        changed.spec.duration = "720h"
        let updated = try client.update(.pkis, namespace: "app1", name: "app1-pki", changed)
        #expect(updated.metadata.generation == 2, "a spec change bumps generation")
        #expect(updated.metadata.resourceVersion != firstVersion)
        #expect { try client.update(.pkis, namespace: "app1", name: "app1-pki", changed) } throws: { ($0 as? APIStatus)?.isConflict == true }

        var withStatus = updated
        withStatus.status = Pki.Status()
        withStatus.status?.secretName = "app1-tls"
        withStatus.spec.duration = "1h"  // ignored through /status
        let statusUpdated = try client.updateStatus(.pkis, namespace: "app1", name: "app1-pki", withStatus)
        #expect(statusUpdated.status?.secretName == "app1-tls")
        #expect(statusUpdated.spec.duration == "720h")
        #expect(statusUpdated.metadata.generation == 2, "status does not bump generation")

        let patched = try client.mergePatch(.pkis, namespace: "app1", name: "app1-pki",
                                            patch: Array(#"{"metadata":{"labels":{"team":"payments"}},"status":{"secretName":"ignored"}}"#.utf8),
                                            as: Pki.self)
        #expect(patched.metadata.labels == ["team": "payments"])
        #expect(patched.status?.secretName == "app1-tls", "status is not patched through the main resource")

        try client.delete(.pkis, namespace: "app1", name: "app1-pki")
        #expect { try client.get(.pkis, namespace: "app1", name: "app1-pki", as: Pki.self) } throws: { error in
            "\(error)" == "404 NotFound: pkis.certgate.dev \"app1-pki\" not found"
        }
    }

    @Test func anUpdateWithoutResourceVersionIsInvalidAndAWrongTokenIsUnauthorized() throws {
        let api = try TestAPIServer()
        defer { api.stop() }
        let client = try KubeClient(configuration: api.clusterConfiguration())
        var pki = try client.create(.pkis, namespace: "app1", samplePki("a"))
        pki.metadata.resourceVersion = nil
        #expect { try client.update(.pkis, namespace: "app1", name: "a", pki) } throws: { ($0 as? APIStatus)?.code == 422 }
        let stranger = try KubeClient(configuration: api.clusterConfiguration(token: "wrong"))
        #expect { try stranger.get(.pkis, namespace: "app1", name: "a", as: Pki.self) } throws: { ($0 as? APIStatus)?.code == 401 }
    }

    @Test func aClientThatTrustsAnotherCAIsRefusedBeforeSendingAnything() throws {
        let api = try TestAPIServer()
        defer { api.stop() }
        var configuration = api.clusterConfiguration()
        let other = try TestAPIServer()
        defer { other.stop() }
        configuration.tls = other.clusterConfiguration().tls
        let client = try KubeClient(configuration: configuration)
        #expect { try client.list(.pkis, namespace: "app1", of: Pki.self) } throws: { error in
            "\(error)".contains("(unable to get local issuer certificate)")
        }
        #expect(api.requests.isEmpty, "the token never reached a server it could not verify")
    }

    @Test func listsFilterBySelectorsAndPage() throws {
        let api = try TestAPIServer()
        defer { api.stop() }
        let client = try KubeClient(configuration: api.clusterConfiguration())
        for (name, team) in [("a", "x"), ("b", "y"), ("c", "x")] {
            _ = try client.create(.pkis, namespace: "app1", samplePki(name, labels: ["team": team]))
        }
        _ = try client.create(.secrets, namespace: "app1", Secret(metadata: ObjectMeta(name: "s", namespace: "app1")))
        let team = try client.list(.pkis, namespace: "app1", options: ListOptions(labelSelector: "team=x"), of: Pki.self)
        #expect(team.items.map { $0.metadata.name! } == ["a", "c"])
        let byName = try client.list(.pkis, namespace: "app1", options: ListOptions(fieldSelector: "metadata.name=b"), of: Pki.self)
        #expect(byName.items.map { $0.metadata.name! } == ["b"])
        let first = try client.list(.pkis, namespace: "app1", options: ListOptions(limit: 2), of: Pki.self)
        #expect(first.items.count == 2 && first.metadata.remainingItemCount == 1)
        let rest = try client.list(.pkis, namespace: "app1", options: ListOptions(limit: 2, continueToken: first.metadata.continue), of: Pki.self)
        #expect(rest.items.map { $0.metadata.name! } == ["c"])
        // An empty token, not an absent one, as kube-apiserver writes a custom resource's last page.
        #expect(rest.metadata.continue == "")
    }

    @Test func watchesReplayFromAResourceVersionThenFollowLiveChanges() throws {
        let api = try TestAPIServer(bookmarkInterval: 0.5)
        defer { api.stop() }
        let client = try KubeClient(configuration: api.clusterConfiguration())
        let start = try client.list(.pkis, namespace: "app1", of: Pki.self).metadata.resourceVersion
        let created = try client.create(.pkis, namespace: "app1", samplePki("w"))
        let watch = WatchRecorder(client, resourceVersion: start)
        #expect(watch.wait { $0 == ["ADDED w"] }, "\(watch.seen)")
        Thread.sleep(forTimeInterval: 0.7)
        #expect(watch.seen == ["ADDED w"], "no BOOKMARK for a watch that saw only its replay (watch-compacted-rv-still-in-watch-cache.raw)")

        var changed = created
        changed.spec.duration = "48h"
        _ = try client.update(.pkis, namespace: "app1", name: "w", changed)
        try client.delete(.pkis, namespace: "app1", name: "w")
        #expect(watch.wait { $0.filter { $0 != "BOOKMARK" }.suffix(2) == ["MODIFIED w gen=2", "DELETED w"] && $0.last == "BOOKMARK" },
                "live events, then a BOOKMARK (watch-pkis.raw): \(watch.seen)")

        api.dropWatches()
        #expect(watch.waitForEnd(), "a dropped watch ends for the caller, who restarts it")
        #expect(watch.error == nil)
    }

    @Test func aWatchFromBeforeTheCompactionGets410ButAListIsServed() throws {
        let api = try TestAPIServer()
        defer { api.stop() }
        let client = try KubeClient(configuration: api.clusterConfiguration())
        let old = try client.create(.pkis, namespace: "app1", samplePki("old")).metadata.resourceVersion
        _ = try client.create(.pkis, namespace: "app1", samplePki("new"))
        api.compact()
        let watch = WatchRecorder(client, resourceVersion: old)
        #expect(watch.waitForEnd())
        #expect(watch.seen == ["ERROR 410"])
        // A list from that version is "not older than" it, served from the watch cache
        // (list-compacted-rv-notolderthan-200.http); only resourceVersionMatch=Exact gets 410.
        let list = try client.list(.pkis, namespace: "app1", options: ListOptions(resourceVersion: old), of: Pki.self)
        #expect(list.items.count == 2)
    }

    @Test func aStalledRequestHitsTheClientsTimeoutAndTheNextOneIsServed() throws {
        let api = try TestAPIServer()
        defer { api.stop() }
        let configuration = api.clusterConfiguration()
        let client = KubeClient(http: try configuration.makeHTTPClient(requestTimeout: 0.5), token: configuration.token)
        api.stallNext(seconds: 2)
        let started = Date()
        #expect(throws: TimeoutError.self) { try client.list(.pkis, namespace: "app1", of: Pki.self) }
        #expect(Date().timeIntervalSince(started) < 1.5)
        #expect(try client.list(.pkis, namespace: "app1", of: Pki.self).items.isEmpty)
    }

    @Test func injectedFailuresCarryRetryAfter() throws {
        let api = try TestAPIServer()
        defer { api.stop() }
        // No retries: the client sees the 429 and its Retry-After.
        let client = try KubeClient(configuration: api.clusterConfiguration(), limits: KubeClientLimits(maxRetries: 0))
        api.failNext(1, status: 429, retryAfter: 2)
        #expect { try client.list(.pkis, namespace: "app1", of: Pki.self) } throws: { error in
            let status = error as? APIStatus
            return status?.code == 429 && status?.details?.retryAfterSeconds == 2
        }
        #expect(try client.list(.pkis, namespace: "app1", of: Pki.self).items.isEmpty, "only the next request fails")
    }
}

@Suite struct ClientPacingTests {
    /// As client-go: a 429 or 5xx with Retry-After is tried again after that long, up to a
    /// bound; a request that is not idempotent is tried again only after a 429.
    @Test func retriesWhatTheServerTurnedAwayAfterItsRetryAfter() throws {
        let api = try TestAPIServer()
        defer { api.stop() }
        let client = try KubeClient(configuration: api.clusterConfiguration(), limits: KubeClientLimits(maxRetries: 2))
        api.failNext(2, status: 503, retryAfter: 1)
        let started = Date()
        #expect(try client.list(.pkis, namespace: "app1", of: Pki.self).items.isEmpty)
        #expect(Date().timeIntervalSince(started) >= 1.9, "waited each Retry-After")

        api.failNext(3, status: 429, retryAfter: 0)
        #expect { try client.list(.pkis, namespace: "app1", of: Pki.self) } throws: { ($0 as? APIStatus)?.code == 429 }
        #expect(try client.list(.pkis, namespace: "app1", of: Pki.self).items.isEmpty)

        api.failNext(1, status: 429, retryAfter: 0)
        #expect(try client.create(.pkis, namespace: "app1", samplePki("a")).metadata.name == "a")
        api.failNext(1, status: 503, retryAfter: 0)
        #expect { try client.create(.pkis, namespace: "app1", samplePki("b")) } throws: { ($0 as? APIStatus)?.code == 503 }
        api.failNext(1, status: 500)
        #expect { try client.list(.pkis, namespace: "app1", of: Pki.self) } throws: { ($0 as? APIStatus)?.code == 500 }
    }

    /// As controller-runtime and cert-manager now do: no client-side limit once the API
    /// server's answers carry API Priority and Fairness's headers; the fallback limit on a
    /// server without them; an explicit limit or an explicit off whatever the server says.
    @Test func automaticPacingTurnsOffWhereTheServerReportsPriorityAndFairness() throws {
        let fair = try TestAPIServer()
        defer { fair.stop() }
        let told = Locked<[PacingDetection]>([])
        let automatic = try KubeClient(configuration: fair.clusterConfiguration(),
                                       limits: KubeClientLimits(pacing: .automatic(qps: 5, burst: 1))) { detected in told.withLock { $0.append(detected) } }
        #expect(automatic.isPacing, "paced until the server has answered")
        let started = Date()
        for _ in 0..<10 { _ = try automatic.list(.pkis, namespace: "app1", of: Pki.self) }
        #expect(Date().timeIntervalSince(started) < 1.0, "ten requests unpaced, where 5 a second would take 1.8 s")
        #expect(!automatic.isPacing)
        #expect(told.withLock { $0 } == [.priorityAndFairness], "told once")

        let fixed = try KubeClient(configuration: fair.clusterConfiguration(), limits: KubeClientLimits(qps: 10, burst: 1))
        _ = try fixed.list(.pkis, namespace: "app1", of: Pki.self)
        #expect(fixed.isPacing, "an explicit limit wins over the server's fairness")

        let unfair = try TestAPIServer(reportsPriorityAndFairness: false)
        defer { unfair.stop() }
        let toldUnfair = Locked<[PacingDetection]>([])
        let fallback = try KubeClient(configuration: unfair.clusterConfiguration(),
                                      limits: KubeClientLimits(pacing: .automatic(qps: 10, burst: 2))) { detected in toldUnfair.withLock { $0.append(detected) } }
        let pacedStart = Date()
        for _ in 0..<6 { _ = try fallback.list(.pkis, namespace: "app1", of: Pki.self) }
        #expect(Date().timeIntervalSince(pacedStart) >= 0.35, "two at once, then four at 10 a second")
        #expect(fallback.isPacing)
        #expect(toldUnfair.withLock { $0 } == [.noPriorityAndFairness])

        let off = try KubeClient(configuration: unfair.clusterConfiguration(), limits: KubeClientLimits(pacing: .off))
        #expect(!off.isPacing)
    }

    /// What the --kube-api-qps and --kube-api-burst flags mean.
    @Test func theFlagsChooseThePacing() {
        #expect(KubeClientLimits.pacing(qps: nil, burst: nil) == .automatic(qps: 20, burst: 30))
        #expect(KubeClientLimits.pacing(qps: 50, burst: nil) == .fixed(qps: 50, burst: 30))
        #expect(KubeClientLimits.pacing(qps: nil, burst: 100) == .fixed(qps: 20, burst: 100))
        #expect(KubeClientLimits.pacing(qps: -1, burst: nil) == .off)
        #expect(KubeClientLimits.pacing(qps: 50, burst: -1) == .off)
    }

    /// A burst goes at once; after it, requests are paced at the rate.
    @Test func pacesRequestsPastTheBurst() throws {
        let api = try TestAPIServer()
        defer { api.stop() }
        let client = try KubeClient(configuration: api.clusterConfiguration(), limits: KubeClientLimits(qps: 10, burst: 2))
        let started = Date()
        for _ in 0..<6 { _ = try client.list(.pkis, namespace: "app1", of: Pki.self) }
        // Two at once, then four at 10 a second: not sooner than 0.4 s.
        #expect(Date().timeIntervalSince(started) >= 0.35)
    }
}
