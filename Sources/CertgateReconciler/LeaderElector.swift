import CertgatePKI
import CertgateSystem
import CertgateLocking
import CertgateKube
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Only one replica reconciles at a time: the holder of a coordination.k8s.io/v1 Lease,
/// elected as client-go's leaderelection does it.
///
/// A candidate takes the Lease when it does not exist, when its holder let it go, or when
/// the holder has not renewed it for `leaseDuration` as seen by this candidate's own clock
/// (clocks of different nodes are never compared), or for the duration the Lease itself
/// states. The leader renews every `retryPeriod`; each request of a renewal ends before
/// `renewDeadline` (the Lease's requests go through a client of their own, so a busy
/// reconciler cannot hold them up), and if no renewal succeeded within it, or someone else
/// holds the Lease, it stops leading at once, before the Lease can expire for the others.
/// ``stop()`` ends the term and only then releases the Lease, so another replica takes over
/// without waiting for it to expire and never while this one still works.
public final class LeaderElector: Sendable {
    /// client-go's defaults: 15 s, 10 s, 2 s.
    public struct Timing: Sendable {
        public var leaseDuration: Double = 15
        public var renewDeadline: Double = 10
        public var retryPeriod: Double = 2
        public init(leaseDuration: Double = 15, renewDeadline: Double = 10, retryPeriod: Double = 2) {
            self.leaseDuration = leaseDuration
            self.renewDeadline = renewDeadline
            self.retryPeriod = retryPeriod
        }
    }

    public let identity: String
    private let client: KubeClient
    private let namespace: String
    private let name: String
    private let timing: Timing
    private let onStartedLeading: @Sendable () -> Void
    private let onStoppedLeading: @Sendable () -> Void
    private struct State {
        var leading = false
        /// When the Lease was last written by this candidate (monotonic seconds).
        var lastRenewal = 0.0
        /// The Lease record last seen (holder and renew time), and when it last changed by our clock.
        var observedHolder: String?
        var observedRecord: String?
        var observedAt = 0.0
    }

    private let state = Locked(State())
    private let stopSignal = StopSignal()
    private let campaign = Locked<JoinableThread?>(nil)

    public init(client: KubeClient, namespace: String, name: String = "certgate-leader", identity: String, timing: Timing = Timing(),
                onStartedLeading: @escaping @Sendable () -> Void, onStoppedLeading: @escaping @Sendable () -> Void) {
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.timing = timing
        self.onStartedLeading = onStartedLeading
        self.onStoppedLeading = onStoppedLeading
    }

    /// Whether this candidate leads now: it won the Lease and renewed it within
    /// renewDeadline (false the moment that passes, even while a renewal is still waiting).
    public var isLeader: Bool {
        let now = now()
        return state.withLock { $0.leading && now - $0.lastRenewal < timing.renewDeadline }
    }

    public func start() throws {
        let thread = try JoinableThread(name: "leader-election") { [self] in run() }
        campaign.withLock { $0 = thread }
    }

    /// Stops campaigning and returns once it has: a leader's term is ended (and joined, by
    /// onStoppedLeading) before the Lease is released.
    public func stop() {
        // Stopped first: a campaign that wins after this sees it and does not start leading.
        stopSignal.stop()
        campaign.withLock { $0 }?.join()
        let wasLeading = state.withLock { state -> Bool in
            let leading = state.leading
            state.leading = false
            return leading
        }
        if wasLeading {
            onStoppedLeading()
            release()
        }
    }

    private var stopped: Bool { stopSignal.isStopped }

    private func run() {
        while !stopped {
            if tryAcquireOrRenew(deadline: now() + timing.renewDeadline) {
                let started = state.withLock { state -> Bool in
                    guard !stopSignal.isStopped, !state.leading else { return false }
                    state.leading = true
                    return true
                }
                if started { onStartedLeading() }
                renewWhileLeading()
            }
            stopSignal.sleep(timing.retryPeriod)
        }
    }

    /// Renews every retryPeriod; returns when leadership is lost or the elector stopped.
    private func renewWhileLeading() {
        while !stopped {
            guard stopSignal.sleep(timing.retryPeriod) else { return }
            let lastRenewal = state.withLock { $0.lastRenewal }
            if tryAcquireOrRenew(deadline: lastRenewal + timing.renewDeadline) { continue }
            // Someone else holds it, or the API did not answer in time: stop at once either way
            // once the deadline passed, or immediately if another holder is recorded.
            let heldByOther = state.withLock { ($0.observedHolder ?? "") != identity && !($0.observedHolder ?? "").isEmpty }
            if heldByOther || now() - lastRenewal >= timing.renewDeadline {
                let wasLeading = state.withLock { state -> Bool in
                    let leading = state.leading
                    state.leading = false
                    return leading
                }
                if wasLeading { onStoppedLeading() }
                return
            }
        }
    }

    /// The Lease's client for one request: it ends by `deadline` (monotonic seconds).
    private func leaseClient(until deadline: Double) throws -> KubeClient {
        let left = deadline - now()
        guard left > 0.001 else { throw LeaseDeadlinePassed() }
        return client.bounded(requestTimeout: left)
    }

    private struct LeaseDeadlinePassed: Error {}

    /// One attempt to create, take over or renew the Lease, every request ending by `deadline`.
    private func tryAcquireOrRenew(deadline: Double) -> Bool {
        let timestamp = microTime()
        let attempted = now()
        do {
            var lease: Lease
            do {
                lease = try leaseClient(until: deadline).get(.leases, namespace: namespace, name: name, as: Lease.self)
            } catch let status as APIStatus where status.isNotFound {
                let fresh = Lease(metadata: ObjectMeta(name: name, namespace: namespace),
                                  spec: Lease.Spec(holderIdentity: identity, leaseDurationSeconds: Int(timing.leaseDuration.rounded(.up)),
                                                   acquireTime: timestamp, renewTime: timestamp, leaseTransitions: 0))
                _ = try leaseClient(until: deadline).create(.leases, namespace: namespace, fresh)
                _ = observe(identity, record: "\(identity)|\(timestamp)", duration: timing.leaseDuration)
                state.withLock { $0.lastRenewal = attempted }
                return true
            }
            let holder = lease.spec?.holderIdentity ?? ""
            // The holder's own leaseDurationSeconds says how long its Lease lasts.
            let duration = lease.spec?.leaseDurationSeconds.map(Double.init) ?? timing.leaseDuration
            let expired = observe(holder, record: "\(holder)|\(lease.spec?.renewTime ?? "")", duration: duration)
            if !holder.isEmpty && holder != identity && !expired {
                return false  // a live Lease someone else holds
            }
            var spec = lease.spec ?? Lease.Spec(holderIdentity: nil, leaseDurationSeconds: nil, acquireTime: nil, renewTime: nil, leaseTransitions: 0)
            if holder != identity {
                spec.acquireTime = timestamp
                spec.leaseTransitions = (spec.leaseTransitions ?? 0) + 1
            }
            spec.holderIdentity = identity
            spec.leaseDurationSeconds = Int(timing.leaseDuration.rounded(.up))
            spec.renewTime = timestamp
            lease.spec = spec
            _ = try leaseClient(until: deadline).update(.leases, namespace: namespace, name: name, lease)
            _ = observe(identity, record: "\(identity)|\(timestamp)", duration: timing.leaseDuration)
            // Counted from before the request: the Lease may have been written at its start.
            state.withLock { $0.lastRenewal = attempted }
            return true
        } catch {
            return false
        }
    }

    /// Notes the record seen; returns whether it has not changed for a whole `duration`.
    private func observe(_ holder: String, record: String, duration: Double) -> Bool {
        let time = now()
        return state.withLock { state in
            state.observedHolder = holder
            if state.observedRecord != record {
                state.observedRecord = record
                state.observedAt = time
            }
            return time - state.observedAt >= duration
        }
    }

    /// Gives the Lease up (holder cleared, 1 s duration), as client-go's ReleaseOnCancel does.
    private func release() {
        let client = self.client.bounded(requestTimeout: timing.renewDeadline)
        guard var lease = try? client.get(.leases, namespace: namespace, name: name, as: Lease.self),
              lease.spec?.holderIdentity == identity else { return }
        lease.spec?.holderIdentity = ""
        lease.spec?.leaseDurationSeconds = 1
        lease.spec?.renewTime = microTime()
        _ = try? client.update(.leases, namespace: namespace, name: name, lease)
    }

    private func now() -> Double { Double(monotonicNanoseconds()) / 1e9 }

    /// RFC 3339 with microseconds, as Lease times are written.
    private func microTime() -> String { utcTimestampNow(fractionDigits: 6) }
}
