import CertgateHTTP
import CertgateNet
import Foundation
import Testing

@Suite(.serialized) struct LoadSpreadingTests {
    /// A loop that accepts connections while it has little to do serves them itself: handing
    /// them to another loop would have both sleep and wake for every request.
    @Test func anIdleLoopKeepsTheConnectionsItAccepts() throws {
        let test = try TestServer()
        defer { test.stop() }
        // Loop 1 held up so that loop 0 accepts.
        let sockets = try connect(4, whileHolding: test.group.loops[1], untilOpen: 4, in: test)
        defer { for socket in sockets { close(socket) } }
        #expect(test.server.connectionsPerLoop == [4, 0])
    }

    /// Connections a client opens at once can be accepted by different loops (the kernel
    /// wakes whichever is waiting); a loop passes those it accepts to the loop that already
    /// serves more, so that the pool's requests do not wake two loops.
    @Test func connectionsArePackedOntoTheLoopServingMost() throws {
        let test = try TestServer()
        defer { test.stop() }
        let (loop0, loop1) = (test.group.loops[0], test.group.loops[1])
        let first = try connect(2, whileHolding: loop0, untilOpen: 2, in: test)
        defer { for socket in first { close(socket) } }
        #expect(test.server.connectionsPerLoop == [0, 2])
        let second = try connect(2, whileHolding: loop1, untilOpen: 4, in: test)
        defer { for socket in second { close(socket) } }
        #expect(test.server.connectionsPerLoop == [0, 4])
    }

    /// A loop busy nearly all of its last window (a storm of full handshakes, say) hands new
    /// connections to an idle loop, so that more cores work when one is not enough.
    @Test func aBusyLoopHandsNewConnectionsToAnIdleOne() throws {
        let test = try TestServer()
        defer { test.stop() }
        let (loop0, loop1) = (test.group.loops[0], test.group.loops[1])
        // Loop 1 held up; loop 0 busy while the connections queue, so that it accepts them
        // the moment it is done, having been busy all along.
        let release = hold(loop1)
        defer { release.signal() }
        // A busy window closes at a wake at least 100 ms after it opened, so at most 100 ms
        // of it can be idle before the task: a second of work makes it nine tenths busy.
        let busy = DispatchSemaphore(value: 0)
        loop0.execute {
            busy.signal()
            let end = Date().addingTimeInterval(1)
            while Date() < end {}
        }
        busy.wait()
        let sockets = try (0..<4).map { _ in try ClientSocket.connect(host: "127.0.0.1", port: test.port, timeout: 5) }
        defer { for socket in sockets { close(socket) } }
        try waitUntil { test.server.openConnections == 4 }
        #expect(test.server.connectionsPerLoop == [0, 4])
    }

    /// Short-lived connections (a storm of full handshakes) stay where the kernel woke a loop
    /// for them, so that every idle loop takes a share instead of handing them over.
    @Test func shortLivedConnectionsStayWhereTheyAreAccepted() throws {
        let test = try TestServer()
        defer { test.stop() }
        for _ in 0..<64 {
            close(try ClientSocket.connect(host: "127.0.0.1", port: test.port, timeout: 5))
        }
        try waitUntil { test.server.openConnections == 0 }
        let pool = try connectPoolAcceptedByBothLoops(in: test)
        defer { for socket in pool { close(socket) } }
        #expect(test.server.connectionsPerLoop == [2, 2])
    }

    /// Each client is judged by its own connections: one that opens and closes them (the
    /// kubelet's readiness probe, every few seconds on the webhook port) does not make another
    /// client's keep-alive pool (the API server's) look short-lived.
    @Test func oneClientsShortConnectionsDoNotUnpackAnothersPool() throws {
        let test = try TestServer { $0.addresses.append(try! SocketAddress(host: "::1", port: 0)) }
        defer { test.stop() }
        for _ in 0..<64 {
            close(try ClientSocket.connect(host: "::1", port: test.ports[1], timeout: 5))
        }
        try waitUntil { test.server.openConnections == 0 }
        let pool = try connectPoolAcceptedByBothLoops(in: test)
        defer { for socket in pool { close(socket) } }
        #expect(test.server.connectionsPerLoop == [0, 4])
    }

    /// Four connections from 127.0.0.1, two accepted by each loop in turn (loop 1 first):
    /// packed, they end on loop 1; left where accepted, two on each.
    private func connectPoolAcceptedByBothLoops(in test: TestServer) throws -> [Int32] {
        let first = try connect(2, whileHolding: test.group.loops[0], untilOpen: 2, in: test)
        do {
            return first + (try connect(2, whileHolding: test.group.loops[1], untilOpen: 4, in: test))
        } catch {
            for socket in first { close(socket) }
            throw error
        }
    }

    /// Opens `count` connections while `loop` runs a task that keeps it from accepting, and
    /// lets it go once the server has accepted them all (`open` in total).
    private func connect(_ count: Int, whileHolding loop: EventLoop, untilOpen open: Int, in test: TestServer) throws -> [Int32] {
        let release = hold(loop)
        defer { release.signal() }
        let sockets = try (0..<count).map { _ in try ClientSocket.connect(host: "127.0.0.1", port: test.port, timeout: 5) }
        try waitUntil { test.server.openConnections == open }
        return sockets
    }

    /// Keeps `loop` in a task, away from its events, until the semaphore returned is signalled
    /// (10 s at most).
    private func hold(_ loop: EventLoop) -> DispatchSemaphore {
        let held = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        loop.execute {
            held.signal()
            _ = release.wait(timeout: .now() + 10)
        }
        held.wait()
        return release
    }

    private func waitUntil(_ condition: () -> Bool) throws {
        let deadline = Date().addingTimeInterval(5)
        while !condition() {
            guard Date() < deadline else {
                Issue.record("condition not met within 5 s")
                return
            }
            usleep(10_000)
        }
    }
}
