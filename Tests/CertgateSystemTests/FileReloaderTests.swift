import CertgateSystem
import Foundation
import Testing

@Suite struct FileReloaderTests {
    /// The supervisor stops the watchers last and promises that nothing it started still
    /// runs once `stop` returns: a reload in flight when `stopWatching` is called finishes
    /// before it returns, and none starts after.
    @Test func stopWatchingReturnsOnlyOnceNoReloadRuns() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("reloader-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("file").path
        try "one".write(toFile: path, atomically: true, encoding: .utf8)

        let entered = DispatchSemaphore(value: 0)
        let builds = Counter()
        let reloader = FileReloader<String>(paths: [path], build: { contents in
            builds.increment(started: true)
            entered.signal()
            usleep(300_000)  // a slow build, as parsing a large policy can be
            builds.increment(started: false)
            return String(decoding: contents[0] ?? [], as: UTF8.self)
        })
        try reloader.startWatching(interval: 0.01)
        #expect(entered.wait(timeout: .now() + 10) == .success, "the first poll did not build")
        reloader.stopWatching()
        #expect(builds.running == 0, "stopWatching returned while a reload was still running")
        try "two".write(toFile: path, atomically: true, encoding: .utf8)
        let finished = builds.finished
        usleep(100_000)  // ten poll intervals: a poll still scheduled would have run by now
        #expect(builds.finished == finished, "a reload ran after stopWatching returned")
    }
}

/// Builds started and finished, across the reloader's queue and the test.
private final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var started = 0
    private var done = 0

    func increment(started isStart: Bool) {
        lock.withLock { if isStart { started += 1 } else { done += 1 } }
    }

    var running: Int { lock.withLock { started - done } }
    var finished: Int { lock.withLock { done } }
}
