import CertgateHTTP
import CertgateNet
import Foundation
import Testing

@Suite struct LoadSpreadingTests {
    /// A client that opens its connections at once (the API server filling its pool, a load
    /// generator) queues them all before a loop wakes; the loop that wakes accepts the whole
    /// batch. They must still be served by every loop, not all by that one.
    @Test func connectionsOpenedAtOnceAreSpreadOverTheLoops() throws {
        let test = try TestServer()
        defer { test.stop() }
        // Both loops busy while the connections queue in the listener's backlog.
        let busy = DispatchGroup()
        for loop in test.group.loops {
            busy.enter()
            loop.execute {
                usleep(300_000)
                busy.leave()
            }
        }
        var sockets: [Int32] = []
        defer { for socket in sockets { close(socket) } }
        for _ in 0..<8 {
            sockets.append(try ClientSocket.connect(host: "127.0.0.1", port: test.port, timeout: 5))
        }
        busy.wait()
        try waitUntil { test.server.openConnections == 8 }
        let perLoop = test.server.connectionsPerLoop
        #expect(perLoop.reduce(0, +) == 8 && perLoop.max()! - perLoop.min()! <= 1,
                "8 connections over 2 loops: \(perLoop)")

        for socket in sockets { close(socket) }
        sockets = []
        try waitUntil { test.server.connectionsPerLoop == [0, 0] }
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
