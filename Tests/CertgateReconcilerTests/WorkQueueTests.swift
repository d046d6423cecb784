import CertgateLocking
import CertgateReconciler
import Dispatch
import Foundation
import Synchronization
import Testing

@Suite struct RetryRateLimiterTests {
    @Test func backsOffPerItemExponentiallyUpToTheMaximum() {
        var limiter = RetryRateLimiter(baseDelay: 0.005, maxDelay: 1000, ratePerSecond: 1e9, burst: 1e9)
        let delays = (0..<5).map { _ in limiter.delay(for: "app1/a", now: 0) }
        #expect(delays == [0.005, 0.01, 0.02, 0.04, 0.08])
        #expect(limiter.delay(for: "app1/b", now: 0) == 0.005, "each object backs off alone")
        for _ in 0..<40 { _ = limiter.delay(for: "app1/a", now: 0) }
        #expect(limiter.delay(for: "app1/a", now: 0) == 1000)
        limiter.forget("app1/a")
        #expect(limiter.delay(for: "app1/a", now: 0) == 0.005)
    }

    @Test func theOverallBucketAllowsABurstThenTenASecond() {
        var limiter = RetryRateLimiter(baseDelay: 0, maxDelay: 0, ratePerSecond: 10, burst: 100)
        let burst = (0..<100).map { limiter.delay(for: "k\($0)", now: 0) }
        #expect(burst.allSatisfy { $0 == 0 })
        #expect(abs(limiter.delay(for: "k100", now: 0) - 0.1) < 1e-9)
        #expect(abs(limiter.delay(for: "k101", now: 0) - 0.2) < 1e-9)
        #expect(limiter.delay(for: "k102", now: 60) == 0, "the bucket refills with time")
    }
}

@Suite struct WorkQueueTests {
    @Test func aKeyIsQueuedOnceAndNeverHeldByTwoWorkers() {
        let queue = WorkQueue()
        queue.add("app1/a")
        queue.add("app1/a")
        queue.add("app1/b")
        #expect(queue.count == 2)
        #expect(queue.next() == "app1/a")
        queue.add("app1/a")  // changed while a worker holds it
        #expect(queue.next() == "app1/b", "not handed to a second worker")
        #expect(queue.count == 0)
        queue.done("app1/a")
        #expect(queue.next() == "app1/a", "queued again once the first worker is done")
        queue.done("app1/a")
        queue.done("app1/b")
    }

    @Test func delayedKeysBecomeReadyWhenTheirTimeComes() {
        let clock = ManualClock()
        let queue = WorkQueue(clock: { clock.read() })
        queue.add("renew/a", after: 3600)
        queue.add("renew/b", after: 60)
        queue.add("renew/b", after: 7200)  // the earlier time wins
        #expect(queue.count == 0)
        clock.advance(61)
        #expect(queue.next() == "renew/b")
        queue.done("renew/b")
        clock.advance(3600)
        #expect(queue.next() == "renew/a")
        queue.done("renew/a")
    }

    @Test func failuresAreRetriedAfterTheirBackoffAndForgottenOnSuccess() {
        let clock = ManualClock()
        let queue = WorkQueue(rateLimiter: RetryRateLimiter(baseDelay: 1, maxDelay: 100), clock: { clock.read() })
        queue.add("app1/a")
        #expect(queue.next() == "app1/a")
        queue.addRateLimited("app1/a")
        queue.done("app1/a")
        queue.addRateLimited("app1/a")  // second failure: 2 s
        #expect(queue.failureCount("app1/a") == 2)
        clock.advance(0.5)
        #expect(queue.count == 0)
        clock.advance(0.6)
        #expect(queue.next() == "app1/a", "the earlier retry time wins")
        queue.forget("app1/a")
        #expect(queue.failureCount("app1/a") == 0)
        queue.done("app1/a")
    }

    @Test func waitingWorkersWakeForNewKeysAndForShutdown() {
        let queue = WorkQueue()
        let got = Locked<[String?]>([])
        let finished = DispatchGroup()
        for _ in 0..<2 {
            finished.enter()
            DispatchQueue.global().async {
                while let key = queue.next() {
                    got.withLock { $0.append(key) }
                    queue.done(key)
                }
                got.withLock { $0.append(nil) }
                finished.leave()
            }
        }
        Thread.sleep(forTimeInterval: 0.1)
        queue.add("app1/a")
        queue.add("app1/b")
        let deadline = Date().addingTimeInterval(5)
        while got.withLock({ $0.count }) < 2 && Date() < deadline { Thread.sleep(forTimeInterval: 0.005) }
        queue.shutDown()
        #expect(finished.wait(timeout: .now() + 5) == .success)
        #expect(got.withLock { $0.compactMap { $0 }.sorted() } == ["app1/a", "app1/b"])
        #expect(got.withLock { $0.filter { $0 == nil }.count } == 2, "both workers stop")
        queue.add("app1/c")
        #expect(queue.count == 0, "nothing is taken after shutdown")
    }
}
