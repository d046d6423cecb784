import CertgateLocking
import CertgateTLS
import CertgateTestSupport
import Foundation
import Testing

/// A returning client resumes its TLS session from a ticket (no certificate, no signature),
/// as `openssl s_client -sess_in` shows with "Reused".
@Suite struct SessionResumptionTests {
    /// One connection with `openssl s_client`, saving the session it gets and offering
    /// `resume` if given; returns "Reused, TLSv1.3", "New, TLSv1.3", ... as s_client prints.
    private func connect(_ server: TestServer, version: String, saveTo sessionFile: String, resume: String? = nil,
                         clientCertificate: Bool = false) throws -> String {
        var arguments = ["s_client", "-connect", "127.0.0.1:\(server.port)", "-CAfile", server.pki.caFile, "-servername", "localhost",
                         version, "-ign_eof", "-sess_out", sessionFile]
        if let resume { arguments += ["-sess_in", resume] }
        if clientCertificate { arguments += ["-cert", server.pki.clientCertificateFile, "-key", server.pki.clientKeyFile] }
        // The request makes the server answer and close, so s_client reads the ticket that
        // TLS 1.3 sends after the handshake before it exits.
        let result = try runProcess("openssl", arguments, input: "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                                    timeout: 20)
        let line = result.stdout.split(separator: "\n").first { $0.hasPrefix("New,") || $0.hasPrefix("Reused,") }
        #expect(result.stdout.contains("HTTP/1.1 200"), "\(result.output.suffix(2000))")
        return line.map { String($0.prefix { $0 != "," }) + ", " + ($0.contains("TLSv1.3") ? "TLSv1.3" : "TLSv1.2") } ?? "no session line"
    }

    @Test(arguments: ["-tls1_2", "-tls1_3"])
    func aReturningClientResumesAcrossACertificateReload(_ version: String) throws {
        let server = try TestServer()
        defer { server.stop() }
        let first = server.directory.file("first.session")
        let tag = version == "-tls1_3" ? "TLSv1.3" : "TLSv1.2"
        #expect(try connect(server, version: version, saveTo: first) == "New, \(tag)")
        #expect(try connect(server, version: version, saveTo: server.directory.file("second.session"), resume: first) == "Reused, \(tag)")

        // A new serving certificate is a new SSL_CTX; the ticket keys are the server's and stay.
        _ = try server.pki.writeServingPair(certificateFile: server.pki.certificateFile, keyFile: server.pki.keyFile)
        #expect(server.serving.reload() == nil)
        #expect(try connect(server, version: version, saveTo: server.directory.file("third.session"), resume: first) == "Reused, \(tag)",
                "a ticket from before the reload still resumes")
    }

    /// A TLS 1.3 ticket is used once (RFC 8446 C.4), so a client that reconnects again and
    /// again resumes only if each resumed connection brings it a fresh ticket.
    @Test func eachResumptionBringsAFreshTicket() throws {
        let server = try TestServer()
        defer { server.stop() }
        var previous = server.directory.file("0.session")
        #expect(try connect(server, version: "-tls1_3", saveTo: previous) == "New, TLSv1.3")
        for index in 1...3 {
            let next = server.directory.file("\(index).session")
            #expect(try connect(server, version: "-tls1_3", saveTo: next, resume: previous) == "Reused, TLSv1.3", "reconnect \(index)")
            let ticket = try? String(contentsOfFile: next, encoding: .utf8)
            try #require(ticket != nil, "reconnect \(index) brought no ticket to resume with next time")
            #expect(ticket != (try String(contentsOfFile: previous, encoding: .utf8)), "reconnect \(index) brought a new ticket")
            previous = next
        }
    }

    @Test func ticketKeysRotateAndAnOldTicketStopsResuming() throws {
        let now = Locked(0.0)
        let keys = SessionTicketKeys(rotationInterval: 100, previousKeys: 1, clock: { now.withLock { $0 } })
        let server = try TestServer(ticketKeys: keys)
        defer { server.stop() }
        let old = server.directory.file("old.session")
        #expect(try connect(server, version: "-tls1_3", saveTo: old) == "New, TLSv1.3")

        now.withLock { $0 = 150 }  // one rotation: the ticket's key is the previous one
        let renewed = server.directory.file("renewed.session")
        #expect(try connect(server, version: "-tls1_3", saveTo: renewed, resume: old) == "Reused, TLSv1.3")
        #expect(keys.keyCount == 2)

        now.withLock { $0 = 250 }  // another: the first key has left the ring
        #expect(try connect(server, version: "-tls1_3", saveTo: server.directory.file("late.session"), resume: old) == "New, TLSv1.3",
                "a ticket sealed two rotations ago makes a full handshake")
        #expect(try connect(server, version: "-tls1_3", saveTo: server.directory.file("fresh.session"), resume: renewed) == "Reused, TLSv1.3",
                "the ticket sent on the resumed connection, sealed with the newer key, still resumes")
    }

    @Test func aChangedClientCASetEndsResumption() throws {
        let server = try TestServer(requireClientCertificate: true)
        defer { server.stop() }
        let first = server.directory.file("first.session")
        #expect(try connect(server, version: "-tls1_3", saveTo: first, clientCertificate: true) == "New, TLSv1.3")
        #expect(try connect(server, version: "-tls1_3", saveTo: server.directory.file("second.session"), resume: first,
                            clientCertificate: true) == "Reused, TLSv1.3")

        // Another CA trusted besides the client's: a session made under the old set must not
        // skip checking the client against the new one.
        let clientCAs = try String(contentsOfFile: server.pki.clientCAFile, encoding: .utf8)
        let otherCA = try String(contentsOfFile: server.pki.caFile, encoding: .utf8)
        try (clientCAs + otherCA).write(toFile: server.pki.clientCAFile, atomically: true, encoding: .utf8)
        #expect(server.serving.reload() == nil)
        #expect(try connect(server, version: "-tls1_3", saveTo: server.directory.file("third.session"), resume: first,
                            clientCertificate: true) == "New, TLSv1.3")
    }
}
