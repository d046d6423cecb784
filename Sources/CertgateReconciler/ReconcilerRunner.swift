import CertgateKube
import CertgateLocking
import Logging

/// The reconciler as `serve` runs it: campaigns for the Lease (or, without leader election,
/// leads at once), and runs one ``LeadershipTerm`` per time it leads, started when the Lease
/// is won and stopped, workers joined and Events sent, before the Lease is released or given up.
public final class ReconcilerRunner: Sendable {
    /// Where the Lease is, who this replica is, and the election's timing.
    public struct Election: Sendable {
        public var namespace: String
        public var name: String
        public var identity: String
        public var timing: LeaderElector.Timing

        public init(namespace: String, name: String, identity: String, timing: LeaderElector.Timing) {
            self.namespace = namespace
            self.name = name
            self.identity = identity
            self.timing = timing
        }
    }

    private let term = Locked<LeadershipTerm?>(nil)
    private let elector = Locked<LeaderElector?>(nil)
    private let makeTerm: @Sendable (_ isLeading: @escaping @Sendable () -> Bool) -> LeadershipTerm
    private let logger: Logger

    /// - Parameter election: nil to lead at once (--leader-elect=false).
    public init(client: KubeClient, reconciler: PkiReconciler, configuration: TermConfiguration, election: Election?,
                informerFailures: FailureReporter? = nil, logger: Logger) {
        self.logger = logger
        makeTerm = { isLeading in
            LeadershipTerm(client: client, reconciler: reconciler, configuration: configuration, failures: informerFailures, isLeading: isLeading)
        }
        guard let election else { return }
        let elector = LeaderElector(client: client, namespace: election.namespace, name: election.name, identity: election.identity,
                                    timing: election.timing, onStartedLeading: { [weak self] in self?.beginTerm() },
                                    onStoppedLeading: { [weak self] in self?.endTerm() })
        self.elector.withLock { $0 = elector }
    }

    /// Campaigns for the Lease, or (without leader election) starts the one term at once.
    public func start() throws {
        if let elector = elector.withLock({ $0 }) { try elector.start() } else { beginTerm() }
    }

    /// Ends the term (its workers joined, its Events sent), then releases the Lease.
    public func stopAndJoin() {
        if let elector = elector.withLock({ $0 }) { elector.stop() } else { endTerm() }
    }

    public var queueDepth: Int { term.withLock { $0?.queueDepth ?? 0 } }

    /// A new policy is in force: every Pki is judged again under it.
    public func policyChanged() {
        guard let current = term.withLock({ $0 }) else { return }
        current.requeueAll()
        logger.info("policy changed; every Pki is queued to be judged again")
    }

    /// Ready when not leading (the webhook serves) or once the term's caches have listed.
    public var readinessProblem: String? {
        guard let current = term.withLock({ $0 }) else { return nil }
        return current.hasSynced ? nil : "the reconciler's informers have not synced yet"
    }

    private func beginTerm() {
        let elector = self.elector.withLock { $0 }
        let fresh = makeTerm { elector?.isLeader ?? true }
        do {
            try fresh.start()
        } catch {
            logger.error("the reconciler could not start; it waits for the next term", metadata: ["error": "\(error)"])
            return
        }
        term.withLock { $0 = fresh }
        logger.info("reconciler started (leader)")
    }

    private func endTerm() {
        guard let old = term.withLock({ term in defer { term = nil }; return term }) else { return }
        if !old.stop() { logger.warning("some of the term's Events were not sent before the deadline") }
        logger.info("reconciler stopped (not leader)")
    }
}
