import CertgatePKI
import CertgateLocking
import CertgateKube
import CertgateKubeTesting
@testable import CertgateReconciler
import Foundation
import Synchronization
import Testing

final class LeadershipLog: Sendable {
    private let entries = Locked<[String]>([])
    func append(_ entry: String) { entries.withLock { $0.append(entry) } }
    var all: [String] { entries.withLock { $0 } }
}

let fast = LeaderElector.Timing(leaseDuration: 3, renewDeadline: 2, retryPeriod: 0.2)

func elector(_ client: KubeClient, _ identity: String, _ log: LeadershipLog) -> LeaderElector {
    LeaderElector(client: client, namespace: "certgate", identity: identity, timing: fast,
                  onStartedLeading: { log.append("\(identity) leads") }, onStoppedLeading: { log.append("\(identity) stops") })
}

func waitUntil(_ seconds: Double = 10, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try condition() { return true }
        Thread.sleep(forTimeInterval: 0.02)
    }
    return try condition()
}

@Suite struct LeaderElectorTests {
    @Test func oneOfTwoLeadsAndAReleasedLeaseIsTakenAtOnce() throws {
        let api = try TestAPIServer()
        defer { api.stop() }
        let client = try KubeClient(configuration: api.clusterConfiguration())
        let log = LeadershipLog()
        let a = elector(client, "a", log)
        let b = elector(client, "b", log)
        try a.start()
        #expect(waitUntil { a.isLeader })
        try b.start()
        Thread.sleep(forTimeInterval: 3.5)  // longer than the lease: a keeps renewing, b must not take over
        #expect(a.isLeader && !b.isLeader)
        #expect(try client.get(.leases, namespace: "certgate", name: "certgate-leader", as: Lease.self).spec?.holderIdentity == "a")

        let released = Date()
        a.stop()
        #expect(waitUntil { b.isLeader })
        #expect(Date().timeIntervalSince(released) < 2.5, "no need to wait for the lease to expire")
        #expect(log.all == ["a leads", "a stops", "b leads"])
        let lease = try client.get(.leases, namespace: "certgate", name: "certgate-leader", as: Lease.self)
        #expect(lease.spec?.holderIdentity == "b" && lease.spec?.leaseTransitions == 1)
        b.stop()
    }

    @Test func aLeaderWhoseLeaseIsTakenStopsLeadingAtOnce() throws {
        let api = try TestAPIServer()
        defer { api.stop() }
        let client = try KubeClient(configuration: api.clusterConfiguration())
        let log = LeadershipLog()
        let a = elector(client, "a", log)
        try a.start()
        defer { a.stop() }
        #expect(waitUntil { a.isLeader })
        var lease = try client.get(.leases, namespace: "certgate", name: "certgate-leader", as: Lease.self)
        lease.spec?.holderIdentity = "intruder"
        lease.spec?.renewTime = "2099-01-01T00:00:00.000000Z"
        _ = try client.update(.leases, namespace: "certgate", name: "certgate-leader", lease)
        #expect(waitUntil(3) { !a.isLeader })
        #expect(log.all == ["a leads", "a stops"])
    }

    @Test func aHolderThatStopsRenewingIsReplacedAfterTheLeaseDuration() throws {
        let api = try TestAPIServer()
        defer { api.stop() }
        let client = try KubeClient(configuration: api.clusterConfiguration())
        // A holder that vanished without releasing.
        _ = try client.create(.leases, namespace: "certgate", Lease(metadata: ObjectMeta(name: "certgate-leader", namespace: "certgate"),
            spec: Lease.Spec(holderIdentity: "gone", leaseDurationSeconds: 3, acquireTime: nil, renewTime: "2026-01-01T00:00:00.000000Z", leaseTransitions: 0)))
        let log = LeadershipLog()
        let b = elector(client, "b", log)
        let started = Date()
        try b.start()
        defer { b.stop() }
        #expect(waitUntil { b.isLeader })
        #expect(Date().timeIntervalSince(started) >= 2.9, "it waited a whole lease duration by its own clock")
    }

    /// Renewals that hang (an API server slow to answer for leases) used to wait out the
    /// client's 30-second timeout while the Lease expired for everyone else. Every request
    /// of a renewal now ends before renewDeadline, and the leader stops leading then.
    @Test func aLeaderWhoseRenewalsHangStopsAtItsRenewDeadline() throws {
        let api = try TestAPIServer()
        defer { api.stop() }
        let client = try KubeClient(configuration: api.clusterConfiguration())
        let log = LeadershipLog()
        let leader = elector(client, "a", log)
        try leader.start()
        defer { leader.stop() }
        #expect(waitUntil { leader.isLeader })
        api.slowDown(requestsContaining: "/leases/", by: 20)
        let slowed = Date()
        #expect(waitUntil(10) { log.all.contains("a stops") })
        let stoppedAfter = Date().timeIntervalSince(slowed)
        #expect(stoppedAfter < fast.renewDeadline + fast.retryPeriod + 1, "stopped \(stoppedAfter) s after renewals began to hang")
        #expect(!leader.isLeader)
        api.slowDown(requestsContaining: "/leases/", by: nil)
    }
}
