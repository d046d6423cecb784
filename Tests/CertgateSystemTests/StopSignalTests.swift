import CertgateLocking
import CertgateSystem
import Foundation
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
        let finished = ConditionVariable()
        spawnDetachedThread(name: "sleeper") {
            // Were it not woken, this would sleep a minute and report that it slept.
            let result = signal.sleep(60)
            slept.withLock { $0 = result }
            finished.broadcast()
        }
        // stop() must find the sleeper asleep, or it would only test the check before sleeping.
        #expect(waitUntilThreadSleeps(named: "sleeper"), "the sleeper never went to sleep")
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

/// Waits (up to 10 s) until this process's thread named `name` is blocked, as /proc sees it
/// (state S: waiting in the kernel, here on the condition variable's futex).
private func waitUntilThreadSleeps(named name: String) -> Bool {
    let deadline = monotonicNanoseconds() + 10_000_000_000
    while monotonicNanoseconds() < deadline {
        for task in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? [] {
            let comm = (try? String(contentsOfFile: "/proc/self/task/\(task)/comm", encoding: .utf8)) ?? ""
            guard comm.trimmingCharacters(in: .newlines) == name,
                  let stat = try? String(contentsOfFile: "/proc/self/task/\(task)/stat", encoding: .utf8),
                  let state = stat.split(separator: ")").last?.split(separator: " ").first else { continue }
            if state == "S" { return true }
        }
        usleep(1_000)
    }
    return false
}
