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
        let sockets = try connectWhile(test.group.loops[1], isHeldFor: 200_000, count: 4, port: test.port)
        defer { for socket in sockets { close(socket) } }
        try waitUntil { test.server.openConnections == 4 }
        #expect(test.server.connectionsPerLoop == [4, 0])
    }

    /// Connections a client opens at once can be accepted by different loops (the kernel
    /// wakes whichever is waiting); a loop passes those it accepts to the loop that already
    /// serves more, so that the pool's requests do not wake two loops.
    @Test func connectionsArePackedOntoTheLoopServingMost() throws {
        let test = try TestServer()
        defer { test.stop() }
        let (loop0, loop1) = (test.group.loops[0], test.group.loops[1])
        let first = try connectWhile(loop0, isHeldFor: 150_000, count: 2, port: test.port)
        defer { for socket in first { close(socket) } }
        try waitUntil { test.server.openConnections == 2 }
        #expect(test.server.connectionsPerLoop == [0, 2])
        let second = try connectWhile(loop1, isHeldFor: 150_000, count: 2, port: test.port)
        defer { for socket in second { close(socket) } }
        try waitUntil { test.server.openConnections == 4 }
        #expect(test.server.connectionsPerLoop == [0, 4])
    }

    /// A loop busy nearly all of its last window (a storm of full handshakes, say) hands new
    /// connections to an idle loop, so that more cores work when one is not enough.
    @Test func aBusyLoopHandsNewConnectionsToAnIdleOne() throws {
        let test = try TestServer()
        defer { test.stop() }
        let (loop0, loop1) = (test.group.loops[0], test.group.loops[1])
        // Loop 0 busy for a while; loop 1 idle meanwhile.
        let busy = DispatchSemaphore(value: 0)
        loop0.execute {
            let end = Date().addingTimeInterval(0.6)
            while Date() < end {}
            busy.signal()
        }
        busy.wait()
        // Loop 1 held up, so that loop 0 is the one that accepts, having just been busy.
        let sockets = try connectWhile(loop1, isHeldFor: 150_000, count: 4, port: test.port)
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
        let first = try connectWhile(test.group.loops[0], isHeldFor: 150_000, count: 2, port: test.port)
        defer { for socket in first { close(socket) } }
        try waitUntil { test.server.openConnections == 2 }
        let second = try connectWhile(test.group.loops[1], isHeldFor: 150_000, count: 2, port: test.port)
        defer { for socket in second { close(socket) } }
        try waitUntil { test.server.openConnections == 4 }
        #expect(test.server.connectionsPerLoop == [2, 2])
    }

    /// Opens `count` connections while `loop` runs a task that keeps it from accepting.
    private func connectWhile(_ loop: EventLoop, isHeldFor microseconds: UInt32, count: Int, port: UInt16) throws -> [Int32] {
        let held = DispatchSemaphore(value: 0)
        loop.execute {
            held.signal()
            usleep(microseconds)
        }
        held.wait()
        return try (0..<count).map { _ in try ClientSocket.connect(host: "127.0.0.1", port: port, timeout: 5) }
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
