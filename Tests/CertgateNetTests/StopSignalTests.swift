import CertgateLocking
import CertgateNet
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite struct StopSignalTests {
    @Test func aSleepRunsItsTimeWhenNothingStopsIt() {
        let signal = StopSignal()
        let started = monotonicNanoseconds()
        #expect(signal.sleep(0.05))
        #expect(monotonicNanoseconds() - started >= 50_000_000, "returned before its time")
        #expect(!signal.isStopped)
    }

    @Test func stoppingWakesASleeperAtOnce() {
        let signal = StopSignal()
        let slept = Locked<Bool?>(nil)
        let finished = Condition()
        spawnDetachedThread(name: "sleeper") {
            // Were it not woken, this would sleep a minute and report that it slept.
            let result = signal.sleep(60)
            slept.withLock { $0 = result }
            finished.broadcast()
        }
        usleep(50_000)
        let generation = finished.generation
        signal.stop()
        if slept.withLock({ $0 }) == nil { finished.wait(unlessChangedSince: generation, seconds: 30) }
        #expect(slept.withLock { $0 } == false, "the sleeper was not woken by stop()")
    }

    @Test func aSleepAfterStopReturnsAtOnce() {
        let signal = StopSignal()
        signal.stop()
        #expect(signal.isStopped)
        #expect(!signal.sleep(60))
    }
}
