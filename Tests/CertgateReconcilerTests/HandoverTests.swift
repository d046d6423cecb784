import CertgateLocking
import CertgateKube
import CertgateKubeTesting
import CertgatePKI
@testable import CertgateReconciler
import Foundation
import Synchronization
import Testing

/// One replica of certgate's control plane in this process: its own client (a named client
/// of the test API server, so its requests can be told apart), reconciler, elector, and a
/// controller per term.
final class Replica: @unchecked Sendable {
    let name: String
    let elector: LeaderElector
    private let controller = Locked<LeadershipTerm?>(nil)

    init(_ api: TestAPIServer, _ name: String, timing: LeaderElector.Timing, workers: Int = 2) throws {
        self.name = name
        let client = try KubeClient(configuration: api.clusterConfiguration(token: api.addClient(name)),
                                    limits: KubeClientLimits(qps: 100_000, burst: 100_000))
        let reconciler = PkiReconciler(policy: { examplePolicy }, bootstrapCA: false)
        let box = WeakBox<Replica>()
        elector = LeaderElector(client: client, namespace: "certgate", identity: name, timing: timing, onStartedLeading: {
            guard let replica = box.value, let elector = Optional(replica.elector) else { return }
            let fresh = LeadershipTerm(client: client, reconciler: reconciler, configuration: TermConfiguration(workers: workers, rateLimiter: RetryRateLimiter(baseDelay: 0.01, maxDelay: 0.5)), isLeading: { elector.isLeader })
            try? fresh.start()
            replica.controller.withLock { $0 = fresh }
        }, onStoppedLeading: {
            box.value?.controller.withLock { controller in defer { controller = nil }; return controller }?.stop()
        })
        box.value = self
    }
}

private final class WeakBox<Value: AnyObject>: @unchecked Sendable {
    weak var value: Value?
}

/// Writes to Pkis, Secrets and Events (the Lease is the election's own), in arrival order.
func reconcileWrites(_ api: TestAPIServer) -> [TestAPIServer.LoggedRequest] {
    api.requestLog.filter { $0.isWrite && !$0.path.contains("/leases") && $0.client != "default" }
}

/// The writers in the order their writes arrived, each run of one writer shown once.
func writerRuns(_ writes: [TestAPIServer.LoggedRequest]) -> [String] {
    writes.reduce(into: [String]()) { runs, write in if runs.last != write.client { runs.append(write.client) } }
}

@Suite struct HandoverTests {
    let timing = LeaderElector.Timing(leaseDuration: 3, renewDeadline: 2, retryPeriod: 0.3)

    private func setUp(_ count: Int) throws -> Rig {
        let rig = try Rig(bootstrapCA: false)
        _ = try rig.client.create(.secrets, namespace: "certgate", try platformCA())
        for index in 0..<count { try rig.createPki("pki-\(index)") }
        return rig
    }

    /// The leader stops (as on SIGTERM) in the middle of its work: its term is joined before
    /// the Lease is released, the next leader finishes, and no write of the first arrives
    /// after the second began; every Pki gets one Secret, issued once.
    @Test func aLeaderThatStopsMidWorkHandsOverWithoutInterleavedWrites() throws {
        let count = 60
        let rig = try setUp(count)
        defer { rig.api.stop() }
        let first = try Replica(rig.api, "first", timing: timing)
        try first.elector.start()
        #expect(waitUntil(10) { first.elector.isLeader })
        let second = try Replica(rig.api, "second", timing: timing)
        try second.elector.start()
        defer { second.elector.stop() }
        #expect(waitUntil(20) { rig.api.requestLog.filter { $0.client == "first" && $0.method == "POST" && $0.path.hasSuffix("/secrets") }.count >= 5 })
        first.elector.stop()
        let released = TestAPIServer.now()

        #expect(waitUntil(60) { (try? readyCount(rig.client)) == count }, "the second replica finished the work")
        let writes = reconcileWrites(rig.api)
        #expect(writes.filter { $0.client == "first" }.allSatisfy { $0.time <= released }, "nothing from the first after it stopped")
        #expect(writerRuns(writes) == ["first", "second"], "one handover, no interleaving: \(writerRuns(writes))")
        let creates = writes.filter { $0.method == "POST" && $0.path.hasSuffix("/secrets") }
        #expect(creates.count == count, "one Secret each, none issued twice")
        #expect(writes.filter { $0.method == "PATCH" && $0.path.contains("/secrets/") }.isEmpty, "no Secret issued again")
    }

    /// The leader's API server goes away (a partition): it stops writing when its
    /// renewDeadline passes, before its Lease expires for the others, and one of the other
    /// two replicas takes over and finishes.
    @Test func aLeaderCutOffFromTheAPIServerStopsWritingBeforeItsLeaseExpires() throws {
        let count = 60
        let rig = try setUp(count)
        defer { rig.api.stop() }
        let replicas = try ["a", "b", "c"].map { try Replica(rig.api, $0, timing: timing, workers: 1) }
        for replica in replicas { try replica.elector.start() }
        defer { for replica in replicas { replica.elector.stop() } }
        #expect(waitUntil(10) { replicas.contains { $0.elector.isLeader } })
        let leader = try #require(replicas.first { $0.elector.isLeader })
        #expect(waitUntil(20) { rig.api.requestLog.filter { $0.client == leader.name && $0.method == "POST" && $0.path.hasSuffix("/secrets") }.count >= 3 })
        rig.api.partition(leader.name)

        #expect(waitUntil(60) { (try? readyCount(rig.client)) == count }, "another replica finished the work")
        rig.api.heal(leader.name)
        let lastRenewal = try #require(rig.api.requestLog.last { $0.client == leader.name && $0.path.contains("/leases") && $0.isWrite && $0.applied })
        let leaseExpiry = lastRenewal.time + timing.leaseDuration
        let writes = reconcileWrites(rig.api)
        let lastOfLeader = try #require(writes.last { $0.client == leader.name })
        #expect(lastOfLeader.time < leaseExpiry, "the cut-off leader wrote until \(lastOfLeader.time - lastRenewal.time) s after its last renewal")
        let runs = writerRuns(writes)
        #expect(runs.count == 2 && runs.first == leader.name, "one handover, no interleaving: \(runs)")
        #expect(writes.filter { $0.client != leader.name }.allSatisfy { $0.time >= leaseExpiry - 0.5 },
                "the next leader began once the Lease could have expired")
    }
}
