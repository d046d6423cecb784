import CertgateLocking
import CertgateKube
import CertgateKubeTesting
@testable import CertgateReconciler
import Foundation
import Synchronization
import Testing

let pkiReference = ObjectReference(apiVersion: "certgate.dev/v1", kind: "Pki", namespace: "app1", name: "app1-pki",
                                   uid: "a13ebf5d-3f0e-4714-b942-ee596812bd99")

func events(_ client: KubeClient) throws -> [Event] {
    try client.list(.events, namespace: "app1", options: ListOptions(fieldSelector: "involvedObject.name=app1-pki"), of: Event.self).items
}

@Suite struct EventRecorderTests {
    /// An API server that answers in seconds holds up the Event, not the caller.
    @Test func anAsynchronousRecorderNeverWaitsForTheAPIServerAndBoundsItsQueue() throws {
        let api = try TestAPIServer()
        defer { api.stop() }
        let client = try KubeClient(configuration: api.clusterConfiguration(), limits: KubeClientLimits(qps: 100_000, burst: 100_000))
        // One sender, held up by the stalled answer: the queue fills behind it.
        let recorder = EventRecorder(client: client, asynchronous: true, senders: 1)
        api.stallNext(seconds: 2)
        let started = Date()
        recorder.record(pkiReference, .normal, reason: "Issued", message: "Issued certificate for app1.app1.svc")
        for index in 0..<(EventRecorder.queueCapacity + 10) {
            recorder.record(pkiReference, .warning, reason: "IssuerNotReady", message: "attempt \(index)")
        }
        #expect(Date().timeIntervalSince(started) < 1, "recording waited for the API server")
        #expect(recorder.droppedCount >= 9, "past \(EventRecorder.queueCapacity) waiting, newer Events are dropped")
        #expect(recorder.flush(seconds: 20))
        #expect(try events(client).contains { $0.reason == "Issued" })
    }


    @Test func aRepeatedEventCountsUpOnTheSameObject() throws {
        let api = try TestAPIServer()
        defer { api.stop() }
        let client = try KubeClient(configuration: api.clusterConfiguration())
        let clock = ManualClock(start: 1_795_000_000)
        let recorder = EventRecorder(client: client, clock: { clock.read() })
        let message = "spec.serviceName: \"appp1\" is not in the allowed names [app1 app2] for namespace app1 (did you mean \"app1\"?)"
        #expect(recorder.record(pkiReference, .warning, reason: "InvalidSpec", message: message) == nil)
        clock.advance(60)
        #expect(recorder.record(pkiReference, .warning, reason: "InvalidSpec", message: message) == nil)
        let written = try events(client)
        #expect(written.count == 1)
        let event = try #require(written.first)
        #expect(event.count == 2)
        #expect(event.involvedObject == pkiReference, "kubectl describe matches kind, name, namespace and uid")
        #expect(event.type == "Warning" && event.reason == "InvalidSpec" && event.message == message)
        #expect(event.source?.component == "certgate" && event.reportingComponent == "certgate")
        #expect(event.firstTimestamp == "2026-11-18T11:06:40Z")
        #expect(event.lastTimestamp == "2026-11-18T11:07:40Z")
        #expect(event.metadata.name?.hasPrefix("app1-pki.") == true)

        #expect(recorder.record(pkiReference, .normal, reason: "Issued", message: "Issued certificate for app1.app1.svc") == nil)
        #expect(try events(client).count == 2, "a different event is a new object")
    }

    @Test func aFloodIsCutToABurstOf25ThenOneEveryFiveMinutes() throws {
        let api = try TestAPIServer()
        defer { api.stop() }
        let client = try KubeClient(configuration: api.clusterConfiguration())
        let clock = ManualClock(start: 1_795_000_000)
        let recorder = EventRecorder(client: client, clock: { clock.read() })
        for _ in 0..<40 { recorder.record(pkiReference, .warning, reason: "IssuerNotReady", message: "the CA Secret certgate/certgate-ca does not exist") }
        #expect(try events(client).first?.count == 25)
        clock.advance(299)
        recorder.record(pkiReference, .warning, reason: "IssuerNotReady", message: "the CA Secret certgate/certgate-ca does not exist")
        #expect(try events(client).first?.count == 25)
        clock.advance(2)
        recorder.record(pkiReference, .warning, reason: "IssuerNotReady", message: "the CA Secret certgate/certgate-ca does not exist")
        #expect(try events(client).first?.count == 26)
    }

    @Test func anEventDeletedMeanwhileIsWrittenAgain() throws {
        let api = try TestAPIServer()
        defer { api.stop() }
        let client = try KubeClient(configuration: api.clusterConfiguration())
        let recorder = EventRecorder(client: client)
        recorder.record(pkiReference, .warning, reason: "SecretConflict", message: "Secret app1-tls belongs to another owner")
        let first = try #require(try events(client).first)
        try client.delete(.events, namespace: "app1", name: first.metadata.name!)
        #expect(recorder.record(pkiReference, .warning, reason: "SecretConflict", message: "Secret app1-tls belongs to another owner") == nil)
        #expect(try events(client).map(\.count) == [1])
    }

    @Test func itsCachesForgetTheLeastRecentlyUsedPastTheirCapacity() {
        var map = BoundedMap<Int>(capacity: 100)
        for index in 0..<100 { map.set("k\(index)", index) }
        _ = map.get("k0")  // recently used
        map.set("k100", 100)
        #expect(map.count <= 100)
        #expect(map.get("k0") == 0, "recently used entries stay")
        #expect(map.get("k1") == nil, "the oldest go")
        #expect(map.get("k100") == 100)
    }

    @Test func messagesCarryNoPEMAndStayUnder1KiB() {
        #expect(EventRecorder.sanitized("bad key: -----BEGIN PRIVATE KEY-----\nMIIE...") == "bad key: [PEM data removed]")
        let long = EventRecorder.sanitized(String(repeating: "é", count: 2000))
        #expect(long.utf8.count <= 1024 && long.hasSuffix("..."))
    }
}

/// A clock the test moves by hand.
final class ManualClock: Sendable {
    private let now: Locked<Double>
    init(start: Double = 1000) { now = Locked(start) }
    func read() -> Double { now.withLock { $0 } }
    func advance(_ seconds: Double) { now.withLock { $0 += seconds } }
}
