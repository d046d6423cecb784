import CertgateKube
import CertgateKubeTesting
import CertgatePKI
@testable import CertgateReconciler
import Foundation
import Testing

@Suite struct PkiControllerTests {
    @Test func everyPkiBecomesReadyWithOneSecretAndADeletedSecretComesBack() throws {
        let rig = try Rig()
        defer { rig.api.stop() }
        let count = 50
        for index in 0..<count { try rig.createPki("pki-\(index)") }
        let controller = PkiController(client: rig.client, reconciler: rig.reconciler, workers: 4,
                                       rateLimiter: RetryRateLimiter(baseDelay: 0.01, maxDelay: 1),
                                       isIssuerSecret: { $0 == "certgate" && $1 == "certgate-ca" })
        controller.start()
        defer { controller.stop() }

        func readyCount() throws -> Int {
            try rig.client.list(.pkis, namespace: "app1", of: PkiResource.self).items
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

        // Settled: the reconciler's own status writes do not queue the Pki again.
        Thread.sleep(forTimeInterval: 0.5)
        let settled = controller.reconcileCount
        Thread.sleep(forTimeInterval: 1)
        #expect(controller.reconcileCount - settled <= 2, "no reconcile loop: \(controller.reconcileCount - settled) more")
    }
}
