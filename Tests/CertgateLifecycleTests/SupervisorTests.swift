import CertgateLocking
import CertgateLifecycle
import Logging
import Synchronization
import Testing

private final class Log: Sendable {
    let entries = Locked<[String]>([])
}

/// A component that notes its starts and stops in a shared log.
private final class Recorded: Supervised {
    let supervisionName: String
    private let log: Log
    private let fails: Bool

    init(_ name: String, log: Log, fails: Bool = false) {
        supervisionName = name
        self.log = log
        self.fails = fails
    }

    func start() throws {
        if fails { throw Failure() }
        log.entries.withLock { $0.append("start \(supervisionName)") }
    }

    func stopAndJoin() { log.entries.withLock { $0.append("stop \(supervisionName)") } }

    struct Failure: Error {}
}

@Suite struct SupervisorTests {
    @Test func startsInOrderAndStopsInReverseOnce() throws {
        let log = Log()
        let supervisor = Supervisor(["a", "b", "c"].map { Recorded($0, log: log) }, logger: Logger(label: "test"))
        try supervisor.start()
        supervisor.stop()
        supervisor.stop()
        #expect(log.entries.withLock { $0 } == ["start a", "start b", "start c", "stop c", "stop b", "stop a"])
    }

    @Test func aComponentThatCannotStartStopsThoseBeforeIt() throws {
        let log = Log()
        let supervisor = Supervisor([Recorded("a", log: log), Recorded("b", log: log), Recorded("c", log: log, fails: true), Recorded("d", log: log)],
                                    logger: Logger(label: "test"))
        let error = #expect(throws: SupervisionError.self) { try supervisor.start() }
        #expect(error?.component == "c")
        #expect(log.entries.withLock { $0 } == ["start a", "start b", "stop b", "stop a"])
    }
}
