import CertgateLocking

/// How long connections from each client address have been living lately, so that a new
/// connection is judged by its own client's habits: on the webhook port the API server keeps
/// a pool of connections open for minutes while the kubelet's readiness probe opens and
/// closes one every few seconds, and an average over both would take the pool for probes.
///
/// A moving average over closes (an eighth each), per address, in microseconds. An address
/// not seen lately is taken for long-lived (10 s), so a new client's first connections are
/// placed as a pool's. Addresses share a fixed number of slots by hash; one that takes
/// another's slot starts again from 10 s, so the table stays bounded whatever connects.
final class PeerLifetimes: Sendable {
    static let unknownMicroseconds = 10_000_000
    static let slotCount = 64

    private struct Slot {
        var host: String?
        var averageMicroseconds = PeerLifetimes.unknownMicroseconds
    }

    private let slots = Locked([Slot](repeating: Slot(), count: PeerLifetimes.slotCount))

    /// The typical lifetime of connections from `host` (nil: a connection without an
    /// address, such as a socket pair).
    func typicalMicroseconds(from host: String?) -> Int {
        let index = PeerLifetimes.slotIndex(host)
        return slots.withLock { $0[index].host == host ? $0[index].averageMicroseconds : PeerLifetimes.unknownMicroseconds }
    }

    /// Counts a closed connection's lifetime for its address.
    func note(microseconds lived: Int, from host: String?) {
        let index = PeerLifetimes.slotIndex(host)
        slots.withLock { slots in
            if slots[index].host != host {
                slots[index] = Slot(host: host)
            }
            let average = slots[index].averageMicroseconds
            slots[index].averageMicroseconds = average + (lived - average) / 8
        }
    }

    private static func slotIndex(_ host: String?) -> Int {
        var hasher = Hasher()
        hasher.combine(host)
        return Int(UInt(bitPattern: hasher.finalize()) % UInt(slotCount))
    }
}
