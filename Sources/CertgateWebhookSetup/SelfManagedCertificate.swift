import CertgatePKI
import CertgateSystem
import CertgateJSON
import CertgateLocking
import CertgateCrypto
import CertgateKube
import CertgateTLS
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The webhook's own CA and serving certificate, kept in a `kubernetes.io/tls` Secret so that
/// every replica serves the same pair and the chart needs no cert-manager.
///
/// Each pass (``synchronize()``) reads the Secret, creates it when it is absent, renews what
/// has run through two thirds of its validity (or no longer covers the wanted hosts), writes
/// it back conditionally on its resourceVersion (a replica that loses the race re-reads the
/// winner's), installs the serving pair in the ``ServingCertificate``, and patches the CA
/// bundle of the ValidatingWebhookConfiguration when it differs (or registers the whole
/// configuration, for a webhook served outside the cluster). ``start()`` runs a pass at
/// once, then again at every renewal time and check interval, with backoff after failures.
///
/// The Secret holds `tls.crt`, `tls.key`, `ca.crt` (the CA, followed by the previous CA
/// while it is still valid, so that the API server trusts replicas that have not yet picked
/// up a new CA) and `ca.key`. A Secret of that name that Certgate did not make (without the
/// `app.kubernetes.io/managed-by: certgate` label) is used only if it holds a good pair; it
/// is never overwritten.
public final class SelfManagedCertificate: Sendable {
    public struct Options: Sendable {
        public var namespace: String
        public var secretName: String
        /// DNS names and IP literals the serving certificate must cover.
        public var hosts: [String]
        /// The ValidatingWebhookConfiguration whose webhooks get the CA bundle; nil for none.
        public var webhookConfigurationName: String?
        /// A configuration to register (created or updated with the current CA bundle)
        /// instead of patching the bundle of an existing one: `serve --webhook-url`.
        public var registration: WebhookRegistration?
        /// Lifetimes of a new CA and a new serving certificate, in seconds. Each is renewed
        /// when a third of its lifetime is left.
        public var authorityValidity: Int64 = 5 * 365 * 86400
        public var servingValidity: Int64 = 365 * 86400
        /// How far back a new certificate's notBefore goes, for clocks that lag ours.
        public var backdate: Int64 = 300
        /// Seconds between passes when nothing is due sooner.
        public var checkInterval: Double = 60

        public init(namespace: String, secretName: String, hosts: [String], webhookConfigurationName: String?) {
            self.namespace = namespace
            self.secretName = secretName
            self.hosts = hosts
            self.webhookConfigurationName = webhookConfigurationName
        }
    }

    /// What one pass did.
    public struct Outcome: Sendable, Equatable {
        /// The Secret was created or renewed by this replica.
        public var wroteSecret: Bool
        /// The serving pair installed changed.
        public var installed: Bool
        /// The webhook configuration's CA bundle was patched (or the configuration registered).
        public var patchedBundle: Bool
        /// The serving certificate's serial, as `openssl x509 -serial` prints it.
        public var serial: String
        /// When the next pass is due on account of renewal, in seconds since 1970.
        public var renewAt: Int64
    }

    public static let managedByLabel = ("app.kubernetes.io/managed-by", "certgate")
    static let hostsAnnotation = "certgate.dev/serving-hosts"

    public let options: Options
    private let client: KubeClient
    private let serving: ServingCertificate
    private let logger: Logger
    private let clock: @Sendable () -> Int64
    private let installedSerial = Locked<String?>(nil)
    private let caBundle = Locked<[UInt8]?>(nil)
    private let stopSignal = StopSignal()

    public init(client: KubeClient, serving: ServingCertificate, options: Options, logger: Logger,
                clock: @escaping @Sendable () -> Int64 = { Int64(time(nil)) }) {
        self.client = client
        self.serving = serving
        self.options = options
        self.logger = logger
        self.clock = clock
    }

    /// The PEM CA bundle of the last pair installed; nil before the first.
    public var currentCABundle: [UInt8]? { caBundle.withLock { $0 } }

    private let worker = Locked<JoinableThread?>(nil)

    /// Why the webhook cannot serve yet, for readiness; nil once a pair is installed.
    public var readinessProblem: String? {
        installedSerial.withLock { $0 } == nil
            ? "the self-managed serving certificate in Secret \(options.namespace)/\(options.secretName) is not loaded yet" : nil
    }

    /// Runs passes on a background thread until ``stop()``.
    public func start() throws {
        let thread = try JoinableThread(name: "serving-cert") { [self] in run() }
        worker.withLock { $0 = thread }
    }

    /// Stops the passes and returns once the thread has ended.
    public func stop() {
        stopSignal.stop()
        worker.withLock { $0 }?.join()
    }

    /// One pass: read, create or renew, write, install, patch the CA bundle.
    @discardableResult
    public func synchronize() throws -> Outcome {
        var attempts = 0
        while true {
            attempts += 1
            let existing: Secret?
            do {
                existing = try client.get(.secrets, namespace: options.namespace, name: options.secretName)
            } catch let status as APIStatus where status.isNotFound {
                existing = nil
            }
            let plan = try planContents(existing)
            let bundle = try plan.contents.bundlePEM()
            var wrote = false
            if plan.changed {
                do {
                    try write(plan.contents, bundle: bundle, over: existing)
                    wrote = true
                    logger.info(existing == nil ? "serving certificate Secret created" : "serving certificate Secret renewed", metadata: [
                        "secret": "\(options.namespace)/\(options.secretName)", "reason": "\(plan.reason)",
                        "serial": "\(plan.contents.serving.serialNumberHex)", "not_after": "\(formatUTC(Int(plan.contents.serving.notAfter), "%Y-%m-%dT%H:%M:%SZ"))",
                    ])
                } catch let status as APIStatus where (status.isConflict || status.isAlreadyExists) && attempts < 5 {
                    continue  // another replica wrote it first: use theirs
                }
            }
            let installed = try install(plan.contents, bundle: bundle)
            let patched: Bool
            if var registration = options.registration {
                registration.caBundle = bundle
                patched = try registration.apply(with: client) != .unchanged
            } else {
                patched = try patchBundle(bundle)
            }
            return Outcome(wroteSecret: wrote, installed: installed, patchedBundle: patched,
                           serial: plan.contents.serving.serialNumberHex, renewAt: plan.contents.renewAt(options))
        }
    }

    // MARK: The Secret's contents

    struct Contents {
        var authority: Certificate
        var authorityKey: PrivateKey
        /// CAs after the current one in ca.crt (the previous CA during a rotation).
        var previousAuthorities: [Certificate]
        var serving: Certificate
        var servingKey: PrivateKey
        var hosts: [String]

        /// ca.crt: the CA, then the previous ones.
        func bundlePEM() throws -> [UInt8] {
            Array(try ([authority] + previousAuthorities).map { try $0.pem() }.joined().utf8)
        }

        /// When the CA is due: with a third of its lifetime left.
        func authorityRenewAt(_ options: Options) -> Int64 { authority.notAfter - options.authorityValidity / 3 }

        /// When the serving certificate is due: with a third of its lifetime left.
        func servingRenewAt(_ options: Options) -> Int64 { serving.notAfter - options.servingValidity / 3 }

        /// When the first of the two is due.
        func renewAt(_ options: Options) -> Int64 { min(authorityRenewAt(options), servingRenewAt(options)) }
    }

    private struct Plan {
        var contents: Contents
        var changed: Bool
        var reason: String
    }

    private func planContents(_ secret: Secret?) throws -> Plan {
        let now = clock()
        guard let secret else {
            return Plan(contents: try issue(keeping: nil, now: now), changed: true, reason: "the Secret did not exist")
        }
        let ours = secret.metadata.labels?[Self.managedByLabel.0] == Self.managedByLabel.1
        let current: Contents
        do {
            current = try parse(secret)
        } catch {
            guard ours else {
                throw SelfManagedCertificateError("Secret \(options.namespace)/\(options.secretName) exists, is not Certgate's (no \(Self.managedByLabel.0)=\(Self.managedByLabel.1) label) and does not hold a usable CA and serving pair (\(error)); delete it or choose another --tls-secret")
            }
            logger.warning("serving certificate Secret unusable; replacing it", metadata: ["secret": "\(options.namespace)/\(options.secretName)", "error": "\(error)"])
            return Plan(contents: try issue(keeping: nil, now: now), changed: true, reason: "the Secret did not parse: \(error)")
        }
        let authorityDue = current.authorityRenewAt(options) <= now
        let servingDue = current.servingRenewAt(options) <= now
        let missingHosts = Set(options.hosts).subtracting(current.hosts)
        let reason: String
        if authorityDue {
            reason = "the CA is due for renewal"
        } else if servingDue {
            reason = "the serving certificate is due for renewal"
        } else if !missingHosts.isEmpty {
            reason = "the serving certificate does not cover \(missingHosts.sorted().joined(separator: ", "))"
        } else {
            return Plan(contents: current, changed: false, reason: "")
        }
        guard ours else {
            throw SelfManagedCertificateError("Secret \(options.namespace)/\(options.secretName) is not Certgate's (no \(Self.managedByLabel.0)=\(Self.managedByLabel.1) label) and \(reason); renew it yourself or choose another --tls-secret")
        }
        var next = try issue(keeping: authorityDue ? nil : current, now: now)
        if authorityDue {
            next.previousAuthorities = [current.authority].filter { $0.notAfter > now }
        }
        return Plan(contents: next, changed: true, reason: reason)
    }

    /// A new serving pair, signed by `existing`'s CA, or by a new CA when `existing` is nil.
    private func issue(keeping existing: Contents?, now: Int64) throws -> Contents {
        let notBefore = now - options.backdate
        let authority = try existing.map { ($0.authority, $0.authorityKey) }
            ?? CertificateSigner.makeAuthority(commonName: "certgate webhook CA", notBefore: notBefore,
                                               notAfter: now + options.authorityValidity)
        let serving = try CertificateSigner.makeServingCertificate(hosts: options.hosts, notBefore: notBefore,
                                                                   notAfter: min(now + options.servingValidity, authority.0.notAfter),
                                                                   issuer: authority)
        return Contents(authority: authority.0, authorityKey: authority.1, previousAuthorities: existing?.previousAuthorities.filter { $0.notAfter > now } ?? [],
                        serving: serving.certificate, servingKey: serving.key, hosts: options.hosts)
    }

    private func parse(_ secret: Secret) throws -> Contents {
        func field(_ key: String) throws -> [UInt8] {
            guard let bytes = secret.bytes(key), !bytes.isEmpty else { throw SelfManagedCertificateError("no \(key)") }
            return bytes
        }
        let authorities = try Certificate.chain(pem: try field("ca.crt"))
        let authorityKey = try PrivateKey(pem: try field("ca.key"))
        let serving = try Certificate(pem: try field("tls.crt"))
        let servingKey = try PrivateKey(pem: try field("tls.key"))
        guard authorities[0].matches(authorityKey) else { throw SelfManagedCertificateError("ca.key is not the key of ca.crt") }
        guard serving.matches(servingKey) else { throw SelfManagedCertificateError("tls.key is not the key of tls.crt") }
        guard serving.isSigned(by: authorities[0]) else { throw SelfManagedCertificateError("tls.crt is not signed by ca.crt") }
        let hosts = secret.metadata.annotations?[Self.hostsAnnotation]?.split(separator: ",").map(String.init) ?? []
        return Contents(authority: authorities[0], authorityKey: authorityKey, previousAuthorities: Array(authorities.dropFirst()),
                        serving: serving, servingKey: servingKey, hosts: hosts)
    }

    private func write(_ contents: Contents, bundle: [UInt8], over existing: Secret?) throws {
        var secret = Secret(
            metadata: ObjectMeta(name: options.secretName, namespace: options.namespace,
                                 labels: ["app.kubernetes.io/name": "certgate", Self.managedByLabel.0: Self.managedByLabel.1],
                                 annotations: [Self.hostsAnnotation: contents.hosts.joined(separator: ",")]),
            type: "kubernetes.io/tls",
            data: ["tls.crt": Array(try contents.serving.pem().utf8), "tls.key": Array(try contents.servingKey.pkcs8PEM().utf8),
                   "ca.crt": bundle, "ca.key": Array(try contents.authorityKey.pkcs8PEM().utf8)])
        if let existing {
            secret.metadata.resourceVersion = existing.metadata.resourceVersion
            secret.metadata.labels = (existing.metadata.labels ?? [:]).merging(secret.metadata.labels ?? [:]) { $1 }
            secret.metadata.annotations = (existing.metadata.annotations ?? [:]).merging(secret.metadata.annotations ?? [:]) { $1 }
            secret.metadata.ownerReferences = existing.metadata.ownerReferences
            _ = try client.update(.secrets, namespace: options.namespace, name: options.secretName, secret)
        } else {
            _ = try client.create(.secrets, namespace: options.namespace, secret)
        }
    }

    // MARK: Serving and the CA bundle

    private func install(_ contents: Contents, bundle: [UInt8]) throws -> Bool {
        let serial = contents.serving.serialNumberHex
        caBundle.withLock { $0 = bundle }
        guard installedSerial.withLock({ $0 }) != serial else { return false }
        try serving.install(certificateChainPEM: Array(try contents.serving.pem().utf8), keyPEM: Array(try contents.servingKey.pkcs8PEM().utf8))
        installedSerial.withLock { $0 = serial }
        return true
    }

    /// Patches every webhook of the configuration whose caBundle is not `bundle`.
    private func patchBundle(_ bundle: [UInt8]) throws -> Bool {
        guard let name = options.webhookConfigurationName else { return false }
        let configuration: ValidatingWebhookConfiguration
        do {
            configuration = try client.get(.validatingWebhookConfigurations, namespace: nil, name: name)
        } catch let status as APIStatus where status.isNotFound {
            throw SelfManagedCertificateError("ValidatingWebhookConfiguration \(name) does not exist yet, so the API server cannot trust the webhook's certificate; its CA bundle will be set once it does")
        }
        let encoded = Base64.encode(bundle)
        let stale = (configuration.webhooks ?? []).filter { $0.clientConfig.caBundle != encoded }
        guard !stale.isEmpty else { return false }
        let patch = BundlePatch(webhooks: stale.map { .init(name: $0.name, clientConfig: .init(caBundle: encoded)) })
        let body = try JSONCoding.encode(patch)
        let _: ValidatingWebhookConfiguration = try client.strategicMergePatch(.validatingWebhookConfigurations, namespace: nil,
                                                                                name: name, patch: Array(body))
        logger.info("webhook CA bundle updated", metadata: ["validatingwebhookconfiguration": "\(name)",
                                                             "webhooks": "\(stale.map(\.name).joined(separator: ","))"])
        return true
    }

    /// `{"webhooks":[{"name":…,"clientConfig":{"caBundle":…}}]}`: webhooks merge by name.
    private struct BundlePatch: Encodable {
        struct Webhook: Encodable {
            struct ClientConfig: Encodable { var caBundle: String }
            var name: String
            var clientConfig: ClientConfig
        }
        var webhooks: [Webhook]
    }

    // MARK: The loop

    private func run() {
        var failures = 0
        while !stopSignal.isStopped {
            var wait = options.checkInterval
            do {
                let outcome = try synchronize()
                failures = 0
                wait = min(wait, max(1, Double(outcome.renewAt - clock())))
            } catch {
                failures += 1
                wait = min(wait, Double(1 << min(failures - 1, 6)))
                logger.error("self-managed serving certificate pass failed; retrying", metadata: [
                    "secret": "\(options.namespace)/\(options.secretName)", "error": "\(error)", "retry_in_seconds": "\(wait)",
                ])
            }
            stopSignal.sleep(wait)
        }
    }
}

/// Why the self-managed certificate could not be kept.
public struct SelfManagedCertificateError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
