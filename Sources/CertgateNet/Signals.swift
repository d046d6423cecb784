#if canImport(Glibc)
import Glibc
#endif
import Dispatch

/// Process-wide signal setup for a server.
public enum Signals {
    /// OpenSSL writes to sockets itself (SSL_set_fd), so MSG_NOSIGNAL alone cannot keep a
    /// peer's reset from killing the process: SIGPIPE is ignored once for the whole process.
    /// Every socket this module creates calls it, so no host program has to remember.
    public static func ignoreBrokenPipe() {
        _ = brokenPipeIgnored
    }

    /// Calls `handler` (on a private queue) each time one of `signals` arrives.
    /// The signals' default action (terminate) is turned off for as long as the sources live.
    public static func observe(_ signals: [Int32], handler: @escaping @Sendable (Int32) -> Void) -> [DispatchSourceSignal] {
        let queue = DispatchQueue(label: "certgate.signals")
        return signals.map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler { handler(number) }
            source.resume()
            return source
        }
    }
}

/// Runs once, on first use, whichever thread gets there first.
private let brokenPipeIgnored: Void = {
    signal(SIGPIPE, SIG_IGN)
}()
