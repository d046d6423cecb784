import CertgateKube
import CertgateKubeTesting
import CertgatePKI
@testable import CertgateReconciler
import Foundation
import Synchronization
import Testing

func readyCount(_ client: KubeClient) throws -> Int {
    try client.list(.pkis, namespace: "app1", of: Pki.self).items
        .filter { $0.status?.conditions?.contains { $0.type == "Ready" && $0.status == "True" } == true }.count
}

func ownedSecrets(_ client: KubeClient) throws -> [Secret] {
    try client.list(.secrets, namespace: "app1", options: ListOptions(labelSelector: "certgate.dev/pki"), of: Secret.self).items
}

@Suite struct FaultsAndReplicasTests {
    @Test func apiFaultsStillEndWithEveryPkiReadyAndOneSecretEach() throws {
        let rig = try Rig()
        defer { rig.api.stop() }
        let count = 20
        let controller = LeadershipTerm(client: rig.client, reconciler: rig.reconciler, configuration: TermConfiguration(workers: 4, rateLimiter: RetryRateLimiter(baseDelay: 0.01, maxDelay: 0.5), asynchronousEvents: false))
        try controller.start()
        defer { controller.stop() }
        for index in 0..<count {
            // The injected faults hit this client too; like a user re-running kubectl, try again.
            var created = false
            for _ in 0..<50 where !created {
                created = (try? rig.createPki("pki-\(index)")) != nil
                if !created { Thread.sleep(forTimeInterval: 0.02) }
            }
            #expect(created)
            switch index {
            case 3: rig.api.failNext(5, status: 500)
            case 8: rig.api.dropWatches(abruptly: true)
            case 12: rig.api.failNext(3, status: 409)
            case 16: rig.api.dropWatches()
            default: break
            }
        }
        let deadline = Date().addingTimeInterval(60)
        while (try? readyCount(rig.client)) != count && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        #expect(try readyCount(rig.client) == count)
        let secrets = try ownedSecrets(rig.client)
        #expect(secrets.count == count, "one Secret per Pki")
        #expect(secrets.allSatisfy { $0.metadata.ownerReferences?.count == 1 })
    }

    /// Two replicas as two processes would be: each its own client, reconciler and elector
    /// (``Replica``). Only the leader writes; when it stops the other takes over, and their
    /// writes never interleave.
    @Test func twoReplicasNeverReconcileAtOnceAndTheSecondTakesOver() throws {
        let rig = try Rig(bootstrapCA: false)
        defer { rig.api.stop() }
        _ = try rig.client.create(.secrets, namespace: "certgate", try platformCA())
        let timing = LeaderElector.Timing(leaseDuration: 3, renewDeadline: 2, retryPeriod: 0.2)
        let first = try Replica(rig.api, "first", timing: timing)
        let second = try Replica(rig.api, "second", timing: timing)
        try first.elector.start()
        #expect(waitUntil(10) { first.elector.isLeader })
        try second.elector.start()
        defer { second.elector.stop() }
        for index in 0..<5 { try rig.createPki("before-\(index)") }
        #expect(waitUntil(30) { (try? readyCount(rig.client)) == 5 })
        #expect(first.elector.isLeader && !second.elector.isLeader)

        first.elector.stop()  // joins its term, then releases the Lease
        for index in 0..<5 { try rig.createPki("after-\(index)") }
        #expect(waitUntil(30) { (try? readyCount(rig.client)) == 10 }, "the second replica took over")
        #expect(second.elector.isLeader)
        let runs = writerRuns(reconcileWrites(rig.api))
        #expect(runs == ["first", "second"], "never two reconcilers at once: writers in arrival order \(runs)")
        #expect(try ownedSecrets(rig.client).count == 10)
    }
}
