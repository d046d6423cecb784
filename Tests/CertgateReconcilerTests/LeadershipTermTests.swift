import CertgateKube
import CertgateKubeTesting
import CertgatePKI
@testable import CertgateReconciler
import Foundation
import Testing

@Suite struct LeadershipTermTests {
    @Test func everyPkiBecomesReadyWithOneSecretAndADeletedSecretComesBack() throws {
        let rig = try Rig()
        defer { rig.api.stop() }
        let count = 50
        for index in 0..<count { try rig.createPki("pki-\(index)") }
        let controller = LeadershipTerm(client: rig.client, reconciler: rig.reconciler, configuration: TermConfiguration(workers: 4, rateLimiter: RetryRateLimiter(baseDelay: 0.01, maxDelay: 1), asynchronousEvents: false))
        try controller.start()
        defer { controller.stop() }

        func readyCount() throws -> Int {
            try rig.client.list(.pkis, namespace: "app1", of: Pki.self).items
                .filter { $0.status?.conditions?.contains { $0.type == "Ready" && $0.status == "True" } == true }.count
        }
        var deadline = Date().addingTimeInterval(60)
        while try readyCount() < count && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        #expect(try readyCount() == count)
        #expect(controller.hasSynced)
        let secrets = try rig.client.list(.secrets, namespace: "app1", options: ListOptions(labelSelector: "certgate.dev/pki"), of: Secret.self).items
        #expect(secrets.count == count, "one Secret per Pki, none twice")

        try rig.client.delete(.secrets, namespace: "app1", name: "pki-7")
        deadline = Date().addingTimeInterval(20)
        while rig.api.object(.secrets, namespace: "app1", name: "pki-7") == nil && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        #expect(rig.api.object(.secrets, namespace: "app1", name: "pki-7") != nil, "restored")

        // Settled: every Pki and Secret as the API server holds them is in the caches and
        // nothing is queued or running. A reconciler that queued a Pki again after its own
        // status write would keep moving the versions and never get here.
        func storedVersions(_ resource: Resource) -> [String: String] {
            Dictionary(uniqueKeysWithValues: (0..<count).compactMap { index -> (String, String)? in
                let metadata = rig.api.object(resource, namespace: "app1", name: "pki-\(index)")?["metadata"] as? [String: Any]
                return (metadata?["resourceVersion"] as? String).map { ("app1/pki-\(index)", $0) }
            })
        }
        deadline = Date().addingTimeInterval(20)
        while !controller.isSettled(pkis: storedVersions(.pkis), secrets: storedVersions(.secrets)) && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.05)
        }
        #expect(controller.isSettled(pkis: storedVersions(.pkis), secrets: storedVersions(.secrets)), "the controller settles")
        // Then nothing is left to wake it, but for an event whose handler runs just after the
        // informer caches it (at most a pass or two): a second look, after a pause that is an
        // observation window and not a wait for anything, finds no loop.
        let settled = controller.reconcileCount
        Thread.sleep(forTimeInterval: 0.5)
        #expect(controller.reconcileCount - settled <= 2, "no reconcile loop: \(controller.reconcileCount - settled) more")
    }

    /// Events reach the pods that use the Secret (volumes, env, envFrom) and still run,
    /// from the controller's pod informer: no list of pods per Event.
    @Test func eventsReachRunningPodsThatUseTheSecretFromTheInformer() throws {
        let rig = try Rig()
        defer { rig.api.stop() }
        func pod(_ name: String, _ spec: String, phase: String = "Running") throws {
            _ = try rig.client.create(.pods, namespace: "app1", try JSONDecoder().decode(Pod.self, from: Data(
                (#"{"metadata":{"name":""# + name + #"","namespace":"app1"},"spec":"# + spec + #","status":{"phase":""# + phase + #""}}"#).utf8)))
        }
        try pod("by-env", #"{"containers":[{"name":"app","env":[{"name":"KEY","valueFrom":{"secretKeyRef":{"name":"app1-pki","key":"tls.key"}}}]}]}"#)
        try pod("by-envfrom", #"{"containers":[{"name":"app","envFrom":[{"secretRef":{"name":"app1-pki"}}]}]}"#)
        try pod("finished", #"{"volumes":[{"name":"tls","secret":{"secretName":"app1-pki"}}]}"#, phase: "Succeeded")
        try pod("unrelated", #"{"volumes":[{"name":"tls","secret":{"secretName":"other"}}]}"#)
        let controller = LeadershipTerm(client: rig.client, reconciler: rig.reconciler, configuration: TermConfiguration(workers: 1, asynchronousEvents: false))
        try controller.start()
        defer { controller.stop() }
        var deadline = Date().addingTimeInterval(10)
        while !controller.hasSynced && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        let listsBefore = rig.api.requests.filter { $0 == "GET /api/v1/namespaces/app1/pods" }.count
        try rig.createPki()
        deadline = Date().addingTimeInterval(20)
        func podsWithEvents() throws -> Set<String> {
            Set(try rig.client.list(.events, namespace: "app1", options: ListOptions(fieldSelector: "involvedObject.kind=Pod"), of: Event.self)
                .items.compactMap(\.involvedObject.name))
        }
        while try podsWithEvents().count < 2 && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        #expect(try podsWithEvents() == ["by-env", "by-envfrom"])
        #expect(rig.api.requests.filter { $0 == "GET /api/v1/namespaces/app1/pods" }.count == listsBefore, "no list of pods per Event")
    }
}
