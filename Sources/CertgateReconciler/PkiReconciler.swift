import CertgateSystem
import CertgateJSON
import CertgateLocking
import CertgateCrypto
import CertgateKube
import CertgatePKI
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Brings one Pki's Secret and status in line with its spec, as one synchronous step per
/// key (the work queue's workers call it). Errors found after admission reach the owner
/// as Events on the Pki and on the pods that mount its Secret, and as a Ready=False
/// condition; nothing is written to a Secret that another owner holds.
public final class PkiReconciler: Sendable {
    /// What the worker should do with the key next.
    public enum Outcome: Equatable, Sendable {
        /// Done; look again after this many seconds (renewal), or when the object changes.
        case done(requeueAfter: Double?)
        /// A transient failure (conflict, API error): retry with backoff.
        case retry(String)
    }

    let policy: @Sendable () -> Policy?
    let bootstrapCA: Bool
    /// Issuers besides the default one whose CA --bootstrap-ca-issuer asks certgate to create.
    let bootstrapIssuers: Set<String>
    let clock: @Sendable () -> Int64
    let metrics: ReconcilerMetrics?
    /// Told of every pass that failed and will be retried, by the Pki's key.
    let failures: FailureReporter?

    /// - Parameters:
    ///   - bootstrapCA: create a self-signed CA Secret for the default issuer when its Secret
    ///     is absent (``bootstrapAuthorities(in:)``, once per term before any Pki is looked at).
    ///   - bootstrapIssuers: other issuers to do the same for, each named explicitly, so that a
    ///     typo in a policy's secretName never mints a root nobody trusts.
    ///   - clock: wall-clock seconds since 1970 (replaceable in tests).
    public init(policy: @escaping @Sendable () -> Policy?, bootstrapCA: Bool = false, bootstrapIssuers: Set<String> = [],
                metrics: ReconcilerMetrics? = nil, failures: FailureReporter? = nil,
                clock: @escaping @Sendable () -> Int64 = { Int64(time(nil)) }) {
        self.metrics = metrics
        self.failures = failures
        self.policy = policy
        self.bootstrapCA = bootstrapCA
        self.bootstrapIssuers = bootstrapIssuers
        self.clock = clock
    }

    public static let issuerRetrySeconds = 30.0

    /// With --bootstrap-ca (the default issuer) and --bootstrap-ca-issuer (others, by name),
    /// creates the CA Secret of each such issuer in the policy whose Secret is absent: once when a term starts, before any Pki is looked at, and when the policy
    /// changes, so that no reconcile races another to create it.
    public func bootstrapAuthorities(in context: ReconcileContext) throws {
        try Pass(reconciler: self, context: context).bootstrapAuthorities()
    }

    /// The issuers whose missing CA certgate creates: the default one with --bootstrap-ca, and
    /// those named with --bootstrap-ca-issuer that the policy has.
    func issuersToBootstrap(in policy: Policy) -> [String] {
        var names = bootstrapIssuers
        if bootstrapCA { names.insert(policy.defaultIssuer) }
        return names.filter { policy.issuers[$0] != nil }.sorted()
    }

    /// One pass over the Pki `namespace`/`name`, reading from and writing through `context`.
    public func reconcile(namespace: String, name: String, in context: ReconcileContext) -> Outcome {
        let outcome: Outcome
        let key = "\(namespace)/\(name)"
        do {
            outcome = try Pass(reconciler: self, context: context).run(namespace: namespace, name: name)
            failures?.recovered(key)
        } catch let status as APIStatus where status.isConflict || status.isAlreadyExists {
            // Someone else wrote first (or the cache had not seen their write yet): routine,
            // retried at once with what they wrote.
            outcome = .retry("conflict: \(status.message ?? "")")
        } catch is TermEnded {
            // The next leader lists every Pki and takes it from here.
            outcome = .done(requeueAfter: nil)
        } catch {
            failures?.report(key, "reconcile of Pki \(key) failed; retrying with backoff", error: error,
                             metadata: ["pki": "\(key)"])
            outcome = .retry("\(error)")
        }
        if case .done = outcome { metrics?.reconciles.labels("done").increment() } else { metrics?.reconciles.labels("retry").increment() }
        return outcome
    }

    /// The label certgate puts on the Secrets it writes: the Pki's name.
    public static let pkiLabel = "certgate.dev/pki"
    /// On a Pki, set to any new value to re-issue once (`certgate renew` sets a timestamp);
    /// on its Secret, the value the certificate in it answered.
    public static let renewAnnotation = "certgate.dev/renew"


    // MARK: Trust bundle

    /// The label on the trust bundle ConfigMaps certgate keeps (and the only ones it changes).
    public static let trustBundleLabel = "certgate.dev/trust-bundle"

    /// Keeps the ConfigMap `name` of `namespace`, as Kubernetes keeps kube-root-ca.crt: with
    /// `ca.crt` holding the root of every issuer and the roots the namespace's certgate
    /// Secrets still carry in their ca.crt (a CA's former root stays until the last leaf it
    /// signed is renewed) while the namespace has a Pki, and gone once it has none. A
    /// ConfigMap of that name that certgate did not make is left alone, and said so once.
    public func reconcileTrustBundle(namespace: String, name: String, hasPkis: Bool, in context: ReconcileContext) -> Outcome {
        let key = "\(namespace)/\(name) (trust bundle)"
        do {
            try Pass(reconciler: self, context: context).trustBundleOrThrow(namespace: namespace, name: name, hasPkis: hasPkis)
            failures?.recovered(key)
            return .done(requeueAfter: nil)
        } catch let status as APIStatus where status.isConflict {
            return .retry("conflict: \(status.message ?? "")")
        } catch is TermEnded {
            return .done(requeueAfter: nil)
        } catch {
            failures?.report(key, "keeping the trust bundle ConfigMap \(namespace)/\(name) failed; retrying with backoff", error: error,
                             metadata: ["configmap": "\(namespace)/\(name)"])
            return .retry("\(error)")
        }
    }

    struct NotCertgates: Error, CustomStringConvertible {
        let namespace: String
        let name: String
        var description: String { "ConfigMap \(namespace)/\(name) exists without the \(PkiReconciler.trustBundleLabel) label: certgate leaves it alone" }
    }

    /// Thrown before a write of a term that is no longer current.
    public struct TermEnded: Error, CustomStringConvertible {
        public var description: String { "the leadership term ended; the write was not sent" }
    }

}

/// One reconcile pass: the reconciler's settings and the term's context it runs in.
private struct Pass {
    typealias Outcome = PkiReconciler.Outcome
    typealias TermEnded = PkiReconciler.TermEnded
    let reconciler: PkiReconciler
    let context: ReconcileContext

    private var client: KubeClient { context.client }
    private var events: EventRecorder { context.events }
    private var reads: any ClusterReads { context.reads }
    private var metrics: ReconcilerMetrics? { reconciler.metrics }
    private var clock: @Sendable () -> Int64 { reconciler.clock }
    private var policy: @Sendable () -> Policy? { reconciler.policy }

    func run(namespace: String, name: String) throws -> PkiReconciler.Outcome {
        try reconcileOrThrow(namespace: namespace, name: name)
    }

    private func reconcileOrThrow(namespace: String, name: String) throws -> Outcome {
        guard let pki = try reads.pki(namespace: namespace, name: name) else {
            metrics?.certificates.remove("\(namespace)/\(name)")
            return .done(requeueAfter: nil)  // deleted; its Secret goes with it (ownerReference)
        }
        if pki.metadata.deletionTimestamp != nil {
            // Being deleted (in the foreground, as GitOps tools do): the garbage collector is
            // removing its Secret, and writing it again would fight the collector for ever.
            metrics?.certificates.remove("\(namespace)/\(name)")
            return .done(requeueAfter: nil)
        }
        guard let policy = policy() else { return .retry("no policy has loaded") }
        let reference = ObjectReference(apiVersion: pki.apiVersion, kind: pki.kind, namespace: namespace, name: name, uid: pki.metadata.uid)
        let secretName = pki.spec.secretName ?? name

        // Objects admitted before the webhook existed, or before the policy changed; a field
        // of the wrong type, which the reader records rather than refuses, is a violation.
        let judgement = judge(pki, namespace: namespace, policy: policy)
        guard judgement.isAllowed else {
            try fail(pki, reference, secretName, reason: "InvalidSpec", message: judgement.message)
            return .done(requeueAfter: nil)
        }

        let issuerName = pki.spec.issuer ?? policy.defaultIssuer
        guard let issuerSecret = policy.issuers[issuerName] else {
            try fail(pki, reference, secretName, reason: "IssuerNotReady", message: "issuer \"\(issuerName)\" is not in the policy")
            return .done(requeueAfter: PkiReconciler.issuerRetrySeconds)
        }
        let authority: CertificateAuthority
        switch try loadAuthority(issuerSecret, issuer: issuerName) {
        case .success(let loaded): authority = loaded
        case .failure(let problem):
            // Once in the log for the operator (not per Pki), counted per pass refused.
            reconciler.failures?.report("issuer \(issuerName)", "issuer \"\(issuerName)\" cannot sign; its Pkis wait with IssuerNotReady",
                                        error: problem, metadata: ["issuer": "\(issuerName)"])
            try fail(pki, reference, secretName, reason: "IssuerNotReady", message: "issuer \"\(issuerName)\": \(problem.message)")
            return .done(requeueAfter: problem.retryAfter)
        }
        reconciler.failures?.recovered("issuer \(issuerName)")

        let existing = try reads.secret(namespace: namespace, name: secretName)
        if let existing, !isOwned(existing, by: pki) {
            let owner = existing.metadata.ownerReferences?.first { $0.controller == true }.map { "\($0.kind) \($0.name)" } ?? "nobody"
            try fail(pki, reference, secretName, reason: "SecretConflict",
                     message: "Secret \(secretName) already exists and is controlled by \(owner); set spec.secretName to another name")
            return .done(requeueAfter: nil)
        }

        // The keystore password comes first: without it no Secret is written at all.
        var keystorePassword: String?
        if let selector = pki.spec.keystores?.pkcs12?.passwordSecretRef, let passwordSecret = selector.name, let passwordKey = selector.key {
            let holder = try reads.secret(namespace: namespace, name: passwordSecret)
            guard let password = holder?.bytes(passwordKey) else {
                try fail(pki, reference, secretName, reason: "KeystorePasswordNotFound",
                         message: "spec.keystores.pkcs12.passwordSecretRef: " + (holder == nil
                            ? "Secret \(passwordSecret) does not exist in namespace \(namespace); create it with the keystore password under key \(passwordKey)"
                            : "Secret \(passwordSecret) has no key \(passwordKey); add the keystore password under it"))
                return .done(requeueAfter: PkiReconciler.issuerRetrySeconds)
            }
            keystorePassword = String(decoding: password, as: UTF8.self)
        }

        // What the Secret holds decides, not a generation counter: a pass that failed after a
        // spec change leaves a Secret that still differs from the spec, and the next pass sees it.
        let now = clock()
        let (held, verdict) = CertificateCheck.judge(chainPEM: existing?.bytes("tls.crt"), keyPEM: existing?.bytes("tls.key"),
                                                     caPEM: existing?.bytes("ca.crt"), spec: pki.spec, policy: policy,
                                                     authority: authority.certificates, issuerName: issuerName, now: now)
        // Renew on demand: a certgate.dev/renew value not yet acted on. The Secret written for
        // a request carries its value too, so a status write that conflicted after it does
        // not issue a second certificate for the same request.
        let renewRequest = pki.metadata.annotations?[PkiReconciler.renewAnnotation]
        let renewAsked = renewRequest.map { $0 != pki.status?.lastRenewRequest
            && $0 != existing?.metadata.annotations?[PkiReconciler.renewAnnotation] } ?? false
        if case .upToDate(let renewal) = verdict, let held, !renewAsked {
            // Nothing to issue; a status lost, stale or never written (a conflict) is written now.
            if let existing, let keyPEM = existing.bytes("tls.key"), let chainPEM = existing.bytes("tls.crt") {
                let keystores = try KeystoreOutputs.changes(pki.spec.keystores, keyPEM: keyPEM, chainPEM: chainPEM,
                                                            caPEM: existing.bytes("ca.crt") ?? [], current: { existing.bytes($0) },
                                                            password: keystorePassword)
                try keepSecret(for: pki, secret: existing, name: secretName, data: keystores)
            }
            metrics?.certificates.set("\(namespace)/\(name)", issuer: issuerName, notAfter: held.leaf.notAfter, renewal: renewal)
            try writeStatus(pki, ready: true, reason: "Issued", message: readyMessage(held.leaf), certificate: held.leaf,
                            renewal: renewal, secretName: secretName, renewRequest: renewRequest)
            return .done(requeueAfter: Double(renewal - now))
        }

        let keep = pki.spec.rotationPolicy == "Never" ? held?.key : nil
        // The issuer's CA changed under a certificate still in use: ca.crt keeps the roots it
        // held until this certificate's next renewal, so peers that pinned them keep working
        // while leaves roll over to the new CA.
        var formerRoots: [Certificate] = []
        if let held, !held.leaf.isSigned(by: authority.certificate), let bundle = existing?.bytes("ca.crt") {
            let rootPEM = try? authority.root.pem()
            formerRoots = ((try? Certificate.chain(pem: bundle)) ?? []).filter { (try? $0.pem()) != rootPEM }
        }
        let issued: IssuedCertificate
        let issuanceStarted = monotonicNanoseconds()
        do {
            issued = try Issuance.issue(pki.spec, policy: policy, by: authority, now: now, reusing: keep, formerRoots: formerRoots)
            metrics?.issuanceSeconds.labels().observe(Double(monotonicNanoseconds() - issuanceStarted) / 1e9)
        } catch {
            try fail(pki, reference, secretName, reason: "IssuanceFailed", message: "issuing the certificate failed: \(error)")
            return .retry("issuance failed: \(error)")
        }
        let keystores = try KeystoreOutputs.changes(pki.spec.keystores, keyPEM: Array(issued.privateKeyPEM.utf8),
                                                    chainPEM: Array(issued.certificateChainPEM.utf8), caPEM: Array(issued.caPEM.utf8),
                                                    current: { _ in nil }, password: keystorePassword)
        try writeSecret(issued, for: pki, name: secretName, over: existing, renewRequest: renewRequest, keystores: keystores)
        let leaf = try Certificate(pem: Array(issued.certificateChainPEM.utf8))
        metrics?.certificates.set("\(namespace)/\(name)", issuer: issuerName, notAfter: issued.notAfter, renewal: issued.renewalTime)
        // The Event goes before the status: a status write that conflicts is retried by a pass
        // that finds the certificate already in the Secret and only writes the status.
        let renewedOnRequest = renewAsked && verdict.isUpToDate && held != nil
        let renewed = verdict == .renewalDue || renewedOnRequest
        let names = (pki.spec.dnsNames ?? []).first ?? pki.spec.commonName ?? (pki.spec.ipAddresses ?? []).first ?? name
        var message = "\(renewed ? "Renewed" : "Issued") certificate for \(names) (serial \(issued.serialNumber)), valid until "
            + "\(formatUTC(Int(issued.notAfter), "%Y-%m-%dT%H:%M:%SZ")), in Secret \(secretName)"
        if case .reissue(let why) = verdict, held != nil { message += ": the previous one no longer matched (\(why))" }
        if renewedOnRequest, let renewRequest {
            // Asked only now: managedFields are read for this question alone, not with every object.
            let asker = (try? client.get(.pkis, namespace: namespace, name: name, as: ManagedFields.self))?
                .manager(ofAnnotation: PkiReconciler.renewAnnotation) ?? "an unrecorded field manager"
            message += ", on request: \(PkiReconciler.renewAnnotation)=\(renewRequest) set by \(asker)"
        }
        try announce(reference, namespace: namespace, secretName: secretName, .normal, reason: renewed ? "Renewed" : "Issued", message: message)
        if issued.cutShortByIssuer {
            try announce(reference, namespace: namespace, secretName: secretName, .warning, reason: "DurationCapped",
                         message: "the certificate ends \(formatUTC(Int(issued.notAfter), "%Y-%m-%dT%H:%M:%SZ")), with the CA of issuer "
                            + "\"\(issuerName)\", before spec.duration \(pki.spec.duration ?? formatDuration(policy.defaultDuration)) would; "
                            + "a certificate never outlives its issuer: renew the CA")
        }
        try writeStatus(pki, ready: true, reason: "Issued", message: readyMessage(leaf), certificate: leaf,
                        renewal: issued.renewalTime, secretName: secretName, renewRequest: renewRequest)
        return .done(requeueAfter: Double(issued.renewalTime - now))
    }

    /// Creates the Secret, or changes in it only what certgate owns (tls.crt, tls.key, ca.crt,
    /// its label, its ownerReference, the template's labels and annotations): what others put
    /// there (labels, annotations, finalizers, other owners and data keys) stays. The patch
    /// names the resourceVersion read, so a concurrent change is a conflict and the pass is
    /// retried, never a lost write.
    private func writeSecret(_ issued: IssuedCertificate, for pki: Pki, name secretName: String, over existing: Secret?,
                             renewRequest: String?, keystores: [String: [UInt8]]) throws {
        let name = pki.metadata.name ?? ""
        let namespace = pki.metadata.namespace ?? ""
        let owner = OwnerReference(apiVersion: Pki.typeMeta.apiVersion, kind: Pki.typeMeta.kind, name: name, uid: pki.metadata.uid ?? "")
        var data = ["tls.crt": Array(issued.certificateChainPEM.utf8), "tls.key": Array(issued.privateKeyPEM.utf8), "ca.crt": Array(issued.caPEM.utf8)]
        data.merge(keystores) { current, _ in current }
        let metadata = SecretMetadata(pki: pki, renewRequest: renewRequest, existing: existing)
        guard let existing else {
            let secret = Secret(metadata: ObjectMeta(name: secretName, namespace: namespace, labels: metadata.labelsToSet,
                                                     annotations: metadata.annotationsToSet, ownerReferences: [owner]),
                                type: "kubernetes.io/tls", data: data)
            try requireCurrentTerm()
            reads.wrote(try client.create(.secrets, namespace: namespace, secret))
            return
        }
        var owners = (existing.metadata.ownerReferences ?? []).filter { $0.uid != owner.uid }
        owners.append(owner)
        try patchSecret(namespace: namespace, name: secretName,
                        SecretPatch(metadata, resourceVersion: existing.metadata.resourceVersion, ownerReferences: owners, data: data))
    }

    /// Brings the Secret's template labels and annotations, and the keystores in `data`, up
    /// to date when the certificate in it is: neither needs a new certificate.
    private func keepSecret(for pki: Pki, secret: Secret, name secretName: String, data: [String: [UInt8]]) throws {
        let metadata = SecretMetadata(pki: pki, renewRequest: nil, existing: secret)
        guard !metadata.isApplied(to: secret) || !data.isEmpty else { return }
        try patchSecret(namespace: pki.metadata.namespace ?? "", name: secretName,
                        SecretPatch(metadata, resourceVersion: secret.metadata.resourceVersion, ownerReferences: nil, data: data))
    }

    private func patchSecret(namespace: String, name: String, _ patch: SecretPatch) throws {
        try requireCurrentTerm()
        let patched: Secret = try client.mergePatch(.secrets, namespace: namespace, name: name, patch: try JSONCoding.encode(patch))
        reads.wrote(patched)
    }

    func trustBundleOrThrow(namespace: String, name: String, hasPkis: Bool) throws {
        var existing: ConfigMap?
        do {
            existing = try client.get(.configMaps, namespace: namespace, name: name, as: ConfigMap.self)
        } catch let status as APIStatus where status.isNotFound {
            existing = nil
        }
        if let existing, existing.metadata.labels?[PkiReconciler.trustBundleLabel] != "true" {
            throw PkiReconciler.NotCertgates(namespace: namespace, name: name)
        }
        guard hasPkis else {
            guard existing != nil else { return }
            try requireCurrentTerm()
            do { try client.delete(.configMaps, namespace: namespace, name: name) } catch let status as APIStatus where status.isNotFound {}
            return
        }
        guard let policy = policy() else { return }
        var pems: [String] = []
        func add(_ certificate: Certificate?) throws {
            guard let pem = try certificate?.pem(), !pems.contains(pem) else { return }
            pems.append(pem)
        }
        for issuer in policy.issuers.keys.sorted() {
            if case .success(let authority) = try loadAuthority(policy.issuers[issuer]!, issuer: issuer) { try add(authority.root) }
        }
        let secrets = try client.list(.secrets, namespace: namespace, options: ListOptions(labelSelector: PkiReconciler.pkiLabel), of: Secret.self)
        for secret in secrets.items {
            for certificate in (try? Certificate.chain(pem: secret.bytes("ca.crt") ?? [])) ?? [] where certificate.notAfter > clock() {
                try add(certificate)
            }
        }
        guard !pems.isEmpty else { return }  // no issuer has a CA yet
        let bundle = pems.joined()
        try requireCurrentTerm()
        guard let existing else {
            _ = try client.create(.configMaps, namespace: namespace, ConfigMap(
                metadata: ObjectMeta(name: name, namespace: namespace,
                                     labels: [PkiReconciler.trustBundleLabel: "true", "app.kubernetes.io/managed-by": "certgate"]),
                data: ["ca.crt": bundle]))
            return
        }
        guard existing.data?["ca.crt"] != bundle else { return }
        var patch = ConfigMap(metadata: ObjectMeta(), data: ["ca.crt": bundle])
        patch.apiVersion = nil
        patch.kind = nil
        patch.metadata.resourceVersion = existing.metadata.resourceVersion
        let _: ConfigMap = try client.mergePatch(.configMaps, namespace: namespace, name: name, patch: try JSONCoding.encode(patch))
    }

    // MARK: Pieces

    /// The issuer's CA from its Secret, parsed once per resourceVersion.
    private func loadAuthority(_ reference: SecretReference, issuer: String) throws -> Result<CertificateAuthority, AuthorityProblem> {
        guard let secret = try reads.secret(namespace: reference.namespace, name: reference.name) else {
            let bootstrapped = policy().map { reconciler.issuersToBootstrap(in: $0).contains(issuer) } ?? false
            let hint = bootstrapped ? " (yet: --bootstrap-ca creates it when a leader starts or the policy changes)" : ""
            return .failure(AuthorityProblem("CAMissing", "the CA Secret \(reference.namespace)/\(reference.name) does not exist\(hint)",
                                             retryAfter: PkiReconciler.issuerRetrySeconds))
        }
        let authority: CertificateAuthority
        switch context.authorities.authority(in: secret, reference) {
        case .failure(let problem): return .failure(problem)
        case .success(let parsed): authority = parsed
        }
        metrics?.certificates.setIssuer(issuer, notAfter: authority.certificate.notAfter)
        // Judged at each use, the rest once per resourceVersion: only time changes this.
        let now = clock()
        let place = "\(reference.namespace)/\(reference.name)"
        if authority.certificate.notAfter <= now {
            return .failure(AuthorityProblem("CAExpired", "the CA certificate in \(place) expired on "
                                             + "\(formatUTC(Int(authority.certificate.notAfter), "%Y-%m-%d")); put a renewed CA in that Secret"))
        }
        if authority.certificate.notBefore > now {
            return .failure(AuthorityProblem("CANotYetValid", "the CA certificate in \(place) is not valid before "
                                             + "\(formatUTC(Int(authority.certificate.notBefore), "%Y-%m-%dT%H:%M:%SZ")); certificates are issued from then",
                                             retryAfter: Double(authority.certificate.notBefore - now)))
        }
        return .success(authority)
    }

    /// With --bootstrap-ca, a self-signed CA (ECDSA P-256, ten years) written to the Secret
    /// of each issuer in the policy whose Secret is absent. One that another replica made
    /// first is theirs.
    func bootstrapAuthorities() throws {
        guard let policy = policy() else { return }
        for unknown in reconciler.bootstrapIssuers.subtracting(policy.issuers.keys).sorted() {
            reconciler.failures?.report("bootstrap-ca-issuer \(unknown)", "--bootstrap-ca-issuer names an issuer the policy does not have",
                                        error: AuthorityProblem("UnknownIssuer", "issuer \"\(unknown)\" is not in the policy; no CA is created for it"),
                                        metadata: ["issuer": "\(unknown)"])
        }
        let references = reconciler.issuersToBootstrap(in: policy).compactMap { policy.issuers[$0] }
        for key in Set(references.map { "\($0.namespace)/\($0.name)" }).sorted() {
            let parts = key.split(separator: "/", maxSplits: 1).map(String.init)
            let reference = SecretReference(namespace: parts[0], name: parts[1])
            guard try reads.secret(namespace: reference.namespace, name: reference.name) == nil else { continue }
            let now = clock()
            let (certificate, key) = try CertificateSigner.makeAuthority(commonName: "certgate \(reference.name)",
                                                                         notBefore: now - Issuance.backdate, notAfter: now + 10 * 365 * 86400)
            let secret = Secret(metadata: ObjectMeta(name: reference.name, namespace: reference.namespace, labels: ["app.kubernetes.io/name": "certgate"]),
                                type: "kubernetes.io/tls",
                                data: ["tls.crt": Array(try certificate.pem().utf8), "tls.key": Array(try key.pkcs8PEM().utf8)])
            do {
                try requireCurrentTerm()
                let created = try client.create(.secrets, namespace: reference.namespace, secret)
                reads.wrote(created)
                context.authorities.store(CertificateAuthority(certificate: certificate, key: key), for: reference,
                                          resourceVersion: created.metadata.resourceVersion)
            } catch let status as APIStatus where status.isAlreadyExists {
                continue  // another replica made it first; the watch brings theirs
            }
        }
    }

    private func isOwned(_ secret: Secret, by pki: Pki) -> Bool {
        secret.metadata.ownerReferences?.contains { $0.controller == true && $0.uid == pki.metadata.uid } ?? false
    }

    private func readyMessage(_ certificate: Certificate) -> String {
        "Certificate is valid until \(formatUTC(Int(certificate.notAfter), "%Y-%m-%dT%H:%M:%SZ"))"
    }

    /// Ready=False with the reason, a Warning Event on the Pki and its pods.
    private func fail(_ pki: Pki, _ reference: ObjectReference, _ secretName: String, reason: String, message: String) throws {
        metrics?.certificates.setReady("\(pki.metadata.namespace ?? "")/\(pki.metadata.name ?? "")",
                                       issuer: pki.spec.issuer ?? policy()?.defaultIssuer ?? "", ready: "False")
        try writeStatus(pki, ready: false, reason: reason, message: message, certificate: nil, renewal: nil, secretName: nil)
        try announce(reference, namespace: reference.namespace ?? "default", secretName: secretName, .warning, reason: reason, message: message)
    }

    /// The Event on the Pki, and on each running pod that uses its Secret.
    private func announce(_ reference: ObjectReference, namespace: String, secretName: String, _ type: EventType, reason: String, message: String) throws {
        try requireCurrentTerm()
        events.record(reference, type, reason: reason, message: message)
        metrics?.events.labels(type.rawValue, reason).increment()
        for pod in try reads.pods(namespace: namespace, usingSecret: secretName) where !pod.hasFinished {
            let podReference = ObjectReference(apiVersion: "v1", kind: "Pod", namespace: namespace, name: pod.metadata.name, uid: pod.metadata.uid)
            events.record(podReference, type, reason: reason, message: "Pki \(reference.name ?? ""): \(message)")
        }
    }

    private func requireCurrentTerm() throws {
        if !context.isCurrent() { throw PkiReconciler.TermEnded() }
    }

    /// `renewRequest`: the certgate.dev/renew value now acted on, recorded so it is not again.
    private func writeStatus(_ pki: Pki, ready: Bool, reason: String, message: String, certificate: Certificate?,
                             renewal: Int64?, secretName: String?, renewRequest: String? = nil) throws {
        let now = formatUTC(Int(clock()), "%Y-%m-%dT%H:%M:%SZ")
        var updated = pki
        var status = pki.status ?? Pki.Status()
        let previous = status.conditions?.first { $0.type == "Ready" }
        let readyStatus = ready ? "True" : "False"
        let transition = previous?.status == readyStatus ? previous?.lastTransitionTime ?? now : now
        let issuingMessage = ready ? "Up to date" : message
        let previousIssuing = status.conditions?.first { $0.type == "Issuing" }
        status.conditions = [
            Pki.Condition(type: "Ready", status: readyStatus, reason: reason, message: message,
                                  lastTransitionTime: transition, observedGeneration: pki.metadata.generation),
            Pki.Condition(type: "Issuing", status: "False", reason: reason, message: issuingMessage,
                                  lastTransitionTime: previousIssuing?.status == "False" ? previousIssuing?.lastTransitionTime ?? now : now,
                                  observedGeneration: pki.metadata.generation),
        ]
        status.observedGeneration = pki.metadata.generation
        if let certificate {
            status.notBefore = formatUTC(Int(certificate.notBefore), "%Y-%m-%dT%H:%M:%SZ")
            status.notAfter = formatUTC(Int(certificate.notAfter), "%Y-%m-%dT%H:%M:%SZ")
            status.serialNumber = certificate.serialNumberHex
            status.secretName = secretName
        }
        if let renewal { status.renewalTime = formatUTC(Int(renewal), "%Y-%m-%dT%H:%M:%SZ") }
        if let renewRequest { status.lastRenewRequest = renewRequest }
        // An unchanged status is not written: each write is a watch event and another reconcile.
        guard status != pki.status else { return }
        updated.status = status
        try requireCurrentTerm()
        reads.wrote(try client.updateStatus(.pkis, namespace: pki.metadata.namespace, name: pki.metadata.name ?? "", updated))
    }
}
