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

    /// A policy change concerns every Pki at once: all are ready at once, each once, with
    /// no failure backoff and no overall bucket in the way (the clock never moves here).
    @Test func addingEveryKeyQueuesThemAllAtOnceEachOnce() {
        let clock = ManualClock()
        let queue = WorkQueue(rateLimiter: RetryRateLimiter(baseDelay: 1, maxDelay: 100, ratePerSecond: 10, burst: 100), clock: { clock.read() })
        let keys = (0..<10_000).map { "ns\($0 % 10)/pki-\($0)" }
        queue.add("ns0/pki-0")
        queue.add("ns1/pki-1", after: 600)  // a renewal far off: now it is due at once
        queue.addAll(keys + keys.prefix(100))
        #expect(queue.count == 10_000, "deduplicated, and none waits")
        #expect(queue.delayedCount == 0)
        var taken = Set<String>()
        while queue.count > 0, let key = queue.next() {
            taken.insert(key)
            queue.done(key)
        }
        #expect(taken.count == 10_000)
        #expect(queue.failureCount("ns0/pki-0") == 0, "not counted as failures")
    }

    /// Delayed keys come out in the order they are due, whatever order they went in.
    @Test func delayedKeysComeOutInTheOrderTheyAreDue() {
        let clock = ManualClock()
        let queue = WorkQueue(clock: { clock.read() })
        var generator = SystemRandomNumberGenerator()
        let delays = (0..<500).map { _ in Double.random(in: 1...10_000, using: &generator) }
        for (index, delay) in delays.enumerated() { queue.add("k\(index)", after: delay) }
        queue.add("k0", after: 0.5)  // sooner than asked before: the sooner time wins
        #expect(queue.delayedCount == 500)
        // All due at once: they are promoted from the heap in the order they fell due.
        clock.advance(10_001)
        var order: [String] = []
        for _ in 0..<500 {
            guard let key = queue.next() else { break }
            order.append(key)
            queue.done(key)
        }
        let expected = ["k0"] + delays.indices.dropFirst().sorted { delays[$0] < delays[$1] }.map { "k\($0)" }
        #expect(order == expected)
        #expect(queue.delayedCount == 0)
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
