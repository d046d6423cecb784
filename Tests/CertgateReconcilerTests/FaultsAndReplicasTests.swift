import CertgateKube
import CertgateKubeTesting
import CertgatePKI
@testable import CertgateReconciler
import Foundation
import Synchronization
import Testing

func readyCount(_ client: KubeClient) throws -> Int {
    try client.list(.pkis, namespace: "app1", of: PkiResource.self).items
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
        let controller = PkiController(client: rig.client, reconciler: rig.reconciler, workers: 4,
                                       rateLimiter: RetryRateLimiter(baseDelay: 0.01, maxDelay: 0.5),
                                       isIssuerSecret: { $0 == "certgate" && $1 == "certgate-ca" })
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

    @Test func twoReplicasNeverReconcileAtOnceAndTheSecondTakesOver() throws {
        let rig = try Rig()
        defer { rig.api.stop() }
        let active = Atomic<Int>(0)
        let mostAtOnce = Atomic<Int>(0)
        let timing = LeaderElector.Timing(leaseDuration: 3, renewDeadline: 2, retryPeriod: 0.2)

        final class Term: @unchecked Sendable { var controller: PkiController? }
        func replica(_ identity: String) -> LeaderElector {
            let term = Term()
            return LeaderElector(client: rig.client, namespace: "certgate", identity: identity, timing: timing, onStartedLeading: {
                let now = active.wrappingAdd(1, ordering: .sequentiallyConsistent).newValue
                _ = mostAtOnce.max(now, ordering: .sequentiallyConsistent)
                let controller = PkiController(client: rig.client, reconciler: rig.reconciler, workers: 2,
                                               isIssuerSecret: { $0 == "certgate" && $1 == "certgate-ca" })
                term.controller = controller
                try? controller.start()
            }, onStoppedLeading: {
                term.controller?.stop()
                term.controller = nil
                active.wrappingSubtract(1, ordering: .sequentiallyConsistent)
            })
        }
        let first = replica("first")
        let second = replica("second")
        try first.start()
        let leading = Date().addingTimeInterval(10)
        while !first.isLeader && Date() < leading { Thread.sleep(forTimeInterval: 0.02) }
        try second.start()
        for index in 0..<5 { try rig.createPki("before-\(index)") }
        var deadline = Date().addingTimeInterval(30)
        while (try? readyCount(rig.client)) != 5 && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        #expect(try readyCount(rig.client) == 5)
        #expect(first.isLeader && !second.isLeader)

        first.stop()  // releases the Lease
        for index in 0..<5 { try rig.createPki("after-\(index)") }
        deadline = Date().addingTimeInterval(30)
        while (try? readyCount(rig.client)) != 10 && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        #expect(try readyCount(rig.client) == 10, "the second replica took over")
        #expect(second.isLeader)
        second.stop()
        #expect(mostAtOnce.load(ordering: .sequentiallyConsistent) == 1, "never two reconcilers at once")
        #expect(try ownedSecrets(rig.client).count == 10)
    }
}
