#if canImport(Glibc)
import Glibc
#endif
internal import CLinux
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

/// Process-wide memory settings for a long-running server.
public enum MemoryTuning {
    /// Caps glibc's malloc arenas (one per allocating thread by default): with the
    /// reconciler's workers and the event loops all allocating, two arenas kept the resident
    /// set about 4 MiB smaller at 10,000 Pkis (scripts/bench-reconciler, 2026-11-21).
    public static func limitMallocArenas(_ count: Int32 = 2) {
        certgate_limit_malloc_arenas(count)
    }
}
