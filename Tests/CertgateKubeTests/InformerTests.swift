import CertgateKube
import CertgateKubeTesting
import CertgatePKI
import Foundation
import Testing

/// Handler calls in order, as "add x", "update x", "delete x".
final class HandlerLog: @unchecked Sendable {
    private let lock = NSLock()
    private var entries: [String] = []

    var handlers: InformerHandlers<Pki> {
        InformerHandlers(onAdd: { [self] in append("add \($0.metadata.name!)") },
                         onUpdate: { [self] old, new in append("update \(new.metadata.name!)\(old.metadata.resourceVersion == new.metadata.resourceVersion ? " (resync)" : "")") },
                         onDelete: { [self] in append("delete \($0.metadata.name!)") })
    }

    private func append(_ entry: String) { lock.withLock { entries.append(entry) } }
    var all: [String] { lock.withLock { entries } }

    func wait(for expected: [String], timeout: Double = 10) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if all == expected { return true }
            Thread.sleep(forTimeInterval: 0.01)
        }
        return all == expected
    }
}

/// A test API server holding one Pki "a", and an informer on app1's pkis that has told its
/// handlers about it.
func informerOverOnePki() throws -> (TestAPIServer, KubeClient, HandlerLog, Informer<Pki>) {
    let api = try TestAPIServer()
    let client = try KubeClient(configuration: api.clusterConfiguration())
    _ = try client.create(.pkis, namespace: "app1", samplePki("a"))
    let log = HandlerLog()
    let informer = Informer<Pki>(client: client, resource: .pkis, namespace: "app1", handlers: log.handlers)
    try informer.start()
    #expect(log.wait(for: ["add a"]))
    return (api, client, log, informer)
}

@Suite struct InformerTests {
    /// What the owner wrote itself is in the cache at once, and when the informer next hears
    /// of that version it wakes no handler; someone else's later write does.
    @Test func anAssumedWriteIsReadAtOnceAndItsEventWakesNobody() throws {
        let api = try TestAPIServer()
        defer { api.stop() }
        let client = try KubeClient(configuration: api.clusterConfiguration())
        _ = try client.create(.pkis, namespace: "app1", samplePki("a"))
        let log = HandlerLog()
        // The informer has a client of its own, which the test cuts off while it writes and
        // assumes: the informer then cannot see the write before its assumption, as it may in
        // production (where an event that wins the race costs one pass that writes nothing).
        let informer = Informer<Pki>(client: try KubeClient(configuration: api.clusterConfiguration(token: api.addClient("informer"))),
                                     resource: .pkis, namespace: "app1", handlers: log.handlers)
        try informer.start()
        defer { informer.stop() }
        #expect(log.wait(for: ["add a"]))
        api.partition("informer")
        api.dropWatches()
        var changed = try client.get(.pkis, namespace: "app1", name: "a", as: Pki.self)
        changed.metadata.labels = ["written": "by-the-owner"]
        let written = try client.update(.pkis, namespace: "app1", name: "a", changed)
        informer.assume(written)
        #expect(informer.get(namespace: "app1", name: "a")?.metadata.labels == ["written": "by-the-owner"])
        _ = try client.create(.pkis, namespace: "app1", samplePki("b"))  // a later event, to know the first has come
        api.heal("informer")
        #expect(log.wait(for: ["add a", "add b"], timeout: 30), "\(log.all)")
        var again = written
        again.metadata.labels = ["written": "by-someone-else"]
        _ = try client.update(.pkis, namespace: "app1", name: "a", again)
        #expect(log.wait(for: ["add a", "add b", "update a"]), "\(log.all)")
        informer.assume(written)  // older than the cache: ignored
        #expect(informer.get(namespace: "app1", name: "a")?.metadata.labels == ["written": "by-someone-else"])
    }

    /// What the owner never reads is dropped before it is cached, from listed and watched
    /// objects and from assumed writes alike.
    @Test func aTransformSlimsWhatIsCached() throws {
        let api = try TestAPIServer()
        defer { api.stop() }
        let client = try KubeClient(configuration: api.clusterConfiguration())
        func applied(_ name: String) -> Pki {
            var pki = samplePki(name)
            pki.metadata.annotations = ["kubectl.kubernetes.io/last-applied-configuration": String(repeating: "x", count: 2000), "kept": "yes"]
            return pki
        }
        _ = try client.create(.pkis, namespace: "app1", applied("listed"))
        let log = HandlerLog()
        let informer = Informer<Pki>(client: client, resource: .pkis, namespace: "app1", transform: { pki in
            var slim = pki
            slim.metadata.annotations?["kubectl.kubernetes.io/last-applied-configuration"] = nil
            return slim
        }, handlers: log.handlers)
        try informer.start()
        defer { informer.stop() }
        #expect(log.wait(for: ["add listed"]))
        let written = try client.create(.pkis, namespace: "app1", applied("watched"))
        #expect(log.wait(for: ["add listed", "add watched"]))
        informer.assume(written)
        for name in ["listed", "watched"] {
            #expect(informer.get(namespace: "app1", name: name)?.metadata.annotations == ["kept": "yes"], "\(name)")
        }
    }

    /// An index of Secret names to the pods that use them follows the pods' changes.
    @Test func theIndexFollowsAddsChangesAndDeletes() throws {
        let api = try TestAPIServer()
        defer { api.stop() }
        let client = try KubeClient(configuration: api.clusterConfiguration())
        func pod(_ name: String, secret: String) throws -> Pod {
            try JSONDecoder().decode(Pod.self, from: Data(
                #"{"metadata":{"name":"\#(name)","namespace":"app1"},"spec":{"volumes":[{"name":"tls","secret":{"secretName":"\#(secret)"}}]}}"#.utf8))
        }
        _ = try client.create(.pods, namespace: "app1", try pod("p1", secret: "s1"))
        let informer = Informer<Pod>(client: client, resource: .pods, namespace: nil,
                                     indexKeys: { pod in pod.secretNames.map { "\(pod.metadata.namespace ?? "")/\($0)" } },
                                     handlers: InformerHandlers())
        try informer.start()
        defer { informer.stop() }
        func users(_ secret: String) -> [String] { informer.objects(indexedBy: "app1/\(secret)").compactMap(\.metadata.name).sorted() }
        func settles(_ expected: [String: [String]]) -> Bool {
            let deadline = Date().addingTimeInterval(10)
            while Date() < deadline {
                if expected.allSatisfy({ users($0.key) == $0.value }) { return true }
                Thread.sleep(forTimeInterval: 0.01)
            }
            return false
        }
        #expect(settles(["s1": ["p1"]]))
        _ = try client.create(.pods, namespace: "app1", try pod("p2", secret: "s1"))
        #expect(settles(["s1": ["p1", "p2"]]))
        var moved = try pod("p1", secret: "s2")
        moved.metadata.resourceVersion = try client.get(.pods, namespace: "app1", name: "p1", as: Pod.self).metadata.resourceVersion
        _ = try client.update(.pods, namespace: "app1", name: "p1", moved)
        #expect(settles(["s1": ["p2"], "s2": ["p1"]]))
        try client.delete(.pods, namespace: "app1", name: "p2")
        #expect(settles(["s1": [], "s2": ["p1"]]))
    }

    /// As the API server's watch cache does: an object that stops matching a watch's label
    /// selector leaves its informer (DELETED), one that starts matching joins it (ADDED).
    @Test func aLabelSelectedInformerSeesObjectsLeaveAndJoin() throws {
        let api = try TestAPIServer()
        defer { api.stop() }
        let client = try KubeClient(configuration: api.clusterConfiguration())
        var labelled = samplePki("a")
        labelled.metadata.labels = ["team": "one"]
        _ = try client.create(.pkis, namespace: "app1", labelled)
        let log = HandlerLog()
        let informer = Informer<Pki>(client: client, resource: .pkis, namespace: "app1", options: ListOptions(labelSelector: "team"),
                                     handlers: log.handlers)
        try informer.start()
        defer { informer.stop() }
        #expect(log.wait(for: ["add a"]))
        _ = try client.mergePatch(.pkis, namespace: "app1", name: "a", patch: Array(#"{"metadata":{"labels":{"team":null}}}"#.utf8), as: Pki.self)
        #expect(log.wait(for: ["add a", "delete a"]), "\(log.all)")
        _ = try client.mergePatch(.pkis, namespace: "app1", name: "a", patch: Array(#"{"metadata":{"labels":{"team":"two"}}}"#.utf8), as: Pki.self)
        #expect(log.wait(for: ["add a", "delete a", "add a"]), "\(log.all)")
    }

    @Test func syncsThenFollowsAndSurvivesDroppedWatchesWithoutLosingOrRepeatingEvents() throws {
        let api = try TestAPIServer()
        defer { api.stop() }
        let client = try KubeClient(configuration: api.clusterConfiguration())
        let x = try client.create(.pkis, namespace: "app1", samplePki("x"))
        let log = HandlerLog()
        let informer = Informer<Pki>(client: client, resource: .pkis, namespace: "app1", handlers: log.handlers)
        try informer.start()
        defer { informer.stop() }
        #expect(log.wait(for: ["add x"]))
        #expect(informer.hasSynced)

        // Each watch delivers an event before it is dropped: one that ends at once with
        // nothing is a broken watch, after which client-go (and the informer) lists again.
        _ = try client.create(.pkis, namespace: "app1", samplePki("y"))
        #expect(log.wait(for: ["add x", "add y"]))
        api.dropWatches()
        var changed = x
        changed.spec.duration = "48h"
        _ = try client.update(.pkis, namespace: "app1", name: "x", changed)
        #expect(log.wait(for: ["add x", "add y", "update x"]))
        api.dropWatches()
        try client.delete(.pkis, namespace: "app1", name: "y")
        #expect(log.wait(for: ["add x", "add y", "update x", "delete y"]), "\(log.all)")
        #expect(informer.listCount == 1, "a dropped watch resumes from its resourceVersion without listing again")
        #expect(informer.get(namespace: "app1", name: "x")?.spec.duration == "48h")
        #expect(informer.get(namespace: "app1", name: "y") == nil)
    }

    @Test func aConnectionCutMidWatchRecoversWithoutLosingOrRepeatingEvents() throws {
        let (api, client, log, informer) = try informerOverOnePki()
        defer { informer.stop(); api.stop() }
        api.dropWatches(abruptly: true)
        _ = try client.create(.pkis, namespace: "app1", samplePki("b"))
        try client.delete(.pkis, namespace: "app1", name: "a")
        // Whether the relist or the new watch tells it, the handlers hear each change once.
        #expect(log.wait(for: ["add a", "add b", "delete a"]), "\(log.all)")
        _ = try client.create(.pkis, namespace: "app1", samplePki("c"))
        #expect(log.wait(for: ["add a", "add b", "delete a", "add c"]), "\(log.all)")
        #expect(informer.objects.map { $0.metadata.name! }.sorted() == ["b", "c"])
    }

    @Test func relistsAfter410WithoutRepeatingWhatItAlreadyTold() throws {
        let (api, client, log, informer) = try informerOverOnePki()
        defer { informer.stop(); api.stop() }
        _ = try client.create(.pkis, namespace: "app1", samplePki("b"))
        try client.delete(.pkis, namespace: "app1", name: "a")
        #expect(log.wait(for: ["add a", "add b", "delete a"]), "\(log.all)")

        // The history it would resume from is gone: the next watch gets 410 and it lists again.
        api.compact()
        api.dropWatches()
        let deadline = Date().addingTimeInterval(10)
        while informer.listCount < 2 && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        #expect(informer.listCount == 2)
        _ = try client.create(.pkis, namespace: "app1", samplePki("c"))
        #expect(log.wait(for: ["add a", "add b", "delete a", "add c"]), "the relist repeated nothing: \(log.all)")
        #expect(informer.objects.map { $0.metadata.name! }.sorted() == ["b", "c"])
    }

    @Test func keepsTryingWhileTheServerFails() throws {
        let api = try TestAPIServer()
        defer { api.stop() }
        let client = try KubeClient(configuration: api.clusterConfiguration())
        _ = try client.create(.pkis, namespace: "app1", samplePki("a"))
        api.failNext(3, status: 503, retryAfter: 1)
        let log = HandlerLog()
        let informer = Informer<Pki>(client: client, resource: .pkis, namespace: "app1", handlers: log.handlers)
        try informer.start()
        defer { informer.stop() }
        #expect(log.wait(for: ["add a"], timeout: 15), "backs off and lists once the server answers")
    }

    @Test func stopsAtOnceAndCallsNoHandlerAfterwards() throws {
        let api = try TestAPIServer()
        defer { api.stop() }
        let client = try KubeClient(configuration: api.clusterConfiguration())
        let log = HandlerLog()
        let informer = Informer<Pki>(client: client, resource: .pkis, namespace: "app1", handlers: log.handlers)
        try informer.start()
        let deadline = Date().addingTimeInterval(10)
        while !informer.hasSynced && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        informer.stop()
        Thread.sleep(forTimeInterval: 0.3)
        _ = try client.create(.pkis, namespace: "app1", samplePki("late"))
        Thread.sleep(forTimeInterval: 0.5)
        #expect(log.all.isEmpty, "\(log.all)")
    }

    @Test func resyncHandsEveryObjectToOnUpdateAgain() throws {
        let api = try TestAPIServer()
        defer { api.stop() }
        let client = try KubeClient(configuration: api.clusterConfiguration())
        _ = try client.create(.pkis, namespace: "app1", samplePki("a"))
        let log = HandlerLog()
        let informer = Informer<Pki>(client: client, resource: .pkis, namespace: "app1", resyncInterval: 0.5, handlers: log.handlers)
        try informer.start()
        defer { informer.stop() }
        #expect(log.wait(for: ["add a"]))
        #expect(log.wait(for: ["add a", "update a (resync)"]), "\(log.all)")
    }
}
