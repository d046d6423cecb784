import CertgateCrypto
import CertgateKube
import CertgatePKI
import CertgateSystem
#if canImport(Glibc)
import Glibc
#endif

/// A certificate as `certgate status` and `certgate inspect` show it.
public struct CertificateReport: Encodable, Sendable, Equatable {
    public var subject: String?
    public var dnsNames: [String]
    public var uris: [String]
    public var ipAddresses: [String]
    public var emailAddresses: [String]
    public var keyAlgorithm: String
    public var issuer: String?
    public var serialNumber: String
    public var notBefore: String
    public var notAfter: String
    /// Whether the chain (tls.crt after the leaf) leads to a root of ca.crt (or the issuer's),
    /// as `openssl verify` checks it now.
    public var chainVerifies: Bool
    /// OpenSSL's reason when it does not; what it was verified against when it does.
    public var chainDetail: String

    /// The leaf of `chainPEM` (tls.crt), its chain verified against `roots` at `now`.
    public init(leaf: Certificate, chain: [Certificate], roots: [Certificate], rootsName: String, now: Int64) {
        subject = leaf.commonName
        let names = leaf.subjectAlternativeNames
        dnsNames = names.dnsNames
        uris = names.uris
        ipAddresses = names.ipAddresses
        emailAddresses = names.emailAddresses
        keyAlgorithm = leaf.keyAlgorithm.map { "\($0)" } ?? "unknown"
        issuer = leaf.issuerCommonName
        serialNumber = leaf.serialNumberHex
        notBefore = formatUTC(Int(leaf.notBefore), "%Y-%m-%dT%H:%M:%SZ")
        notAfter = formatUTC(Int(leaf.notAfter), "%Y-%m-%dT%H:%M:%SZ")
        if let failure = leaf.verificationFailure(intermediates: chain, roots: roots, at: now) {
            chainVerifies = false
            chainDetail = roots.isEmpty ? "no root to verify against (\(rootsName) is empty)" : failure
        } else {
            chainVerifies = true
            chainDetail = "verifies against \(rootsName)"
        }
    }
}

/// A kubernetes.io/tls Secret, decoded: what `certgate inspect secret` shows, and the Secret
/// part of `certgate status pki`.
public struct SecretReport: Encodable, Sendable, Equatable {
    public var namespace: String
    public var name: String
    /// What keeps it from being shown (not found, forbidden, no certificate); nil when it is.
    public var problem: String?
    public var certificate: CertificateReport?

    public static func read(_ secret: Secret?, namespace: String, name: String, extraRoots: [Certificate] = [], now: Int64) -> SecretReport {
        var report = SecretReport(namespace: namespace, name: name)
        guard let secret else {
            report.problem = "the Secret does not exist"
            return report
        }
        guard let chainPEM = secret.bytes("tls.crt"), !chainPEM.isEmpty else {
            report.problem = "the Secret has no tls.crt"
            return report
        }
        let chain: [Certificate]
        do {
            chain = try Certificate.chain(pem: chainPEM)
        } catch {
            report.problem = "tls.crt does not parse: \(error)"
            return report
        }
        let roots = ((try? Certificate.chain(pem: secret.bytes("ca.crt") ?? [])) ?? []) + extraRoots
        report.certificate = CertificateReport(leaf: chain[0], chain: Array(chain.dropFirst()), roots: roots,
                                               rootsName: extraRoots.isEmpty ? "ca.crt" : "ca.crt and the issuer's root", now: now)
        if let keyPEM = secret.bytes("tls.key"), let key = try? PrivateKey(pem: keyPEM), !chain[0].matches(key) {
            report.problem = "tls.key is not the key of tls.crt"
        }
        return report
    }
}

/// Everything the person on call asks about one Pki, in one place: `certgate status pki`.
public struct PkiStatusReport: Encodable, Sendable {
    public struct Condition: Encodable, Sendable, Equatable {
        public var type: String
        public var status: String
        public var reason: String?
        public var message: String?
        public var lastTransitionTime: String?
    }

    public struct EventLine: Encodable, Sendable, Equatable {
        public var type: String
        public var reason: String
        public var message: String
        public var count: Int
        public var lastSeen: String?
    }

    public var namespace: String
    public var name: String
    /// True, False, or Unknown (no Ready condition yet).
    public var ready: String
    public var conditions: [Condition]
    public var renewalTime: String?
    public var secret: SecretReport
    /// The reconciler's judgement of the spec under the policy: nil when allowed.
    public var specProblem: String?
    /// Whether the certificate in the Secret still serves the spec, in the reconciler's words.
    public var certificateVerdict: String
    /// How the judgements were made (which policy, which issuer certificates).
    public var judgedWith: String
    public var pods: [String]
    public var events: [EventLine]
}

/// Reads what `certgate status` shows, with read access only: get pkis, secrets and
/// configmaps, list pods and events.
public struct StatusReader: Sendable {
    public enum Failure: Error, CustomStringConvertible, Equatable {
        case notFound(String)

        public var description: String {
            switch self {
            case .notFound(let what): "\(what) not found"
            }
        }
    }

    /// Where the policy comes from: a file, or the ConfigMap the chart keeps it in.
    public enum PolicySource: Sendable {
        case file(String)
        case configMap(namespace: String, name: String, key: String)
    }

    let client: KubeClient
    let clock: @Sendable () -> Int64

    public init(client: KubeClient, clock: @escaping @Sendable () -> Int64 = { Int64(time(nil)) }) {
        self.client = client
        self.clock = clock
    }

    public func secret(namespace: String, name: String) throws -> SecretReport {
        guard let secret: Secret = try client.getIfPresent(.secrets, namespace: namespace, name: name) else {
            throw Failure.notFound("secret \(namespace)/\(name)")
        }
        return SecretReport.read(secret, namespace: namespace, name: name, now: clock())
    }

    /// The report on Pki `namespace`/`name`; `loadPolicy` gives the policy (or says why not).
    public func pki(namespace: String, name: String, policy loadPolicy: () -> Result<Policy, Error>) throws -> PkiStatusReport {
        guard let pki: Pki = try client.getIfPresent(.pkis, namespace: namespace, name: name) else {
            throw Failure.notFound("pki \(namespace)/\(name)")
        }
        let now = clock()
        let conditions = (pki.status?.conditions ?? []).map {
            PkiStatusReport.Condition(type: $0.type, status: $0.status, reason: $0.reason, message: $0.message,
                                      lastTransitionTime: $0.lastTransitionTime)
        }
        let secretName = pki.spec.secretName ?? name
        var secretRead: Secret?
        var secretProblem: String?
        do {
            secretRead = try client.getIfPresent(.secrets, namespace: namespace, name: secretName)
        } catch {
            secretProblem = "the Secret could not be read: \(error)"
        }

        var specProblem: String?
        var verdict = "not judged"
        var judgedWith = ""
        var issuerRoots: [Certificate] = []
        switch loadPolicy() {
        case .failure(let error):
            verdict = "not judged: no policy (\(error)); pass --policy FILE or --policy-configmap NAMESPACE/NAME"
            judgedWith = "no policy"
        case .success(let policy):
            let judgement = judge(pki, namespace: namespace, policy: policy)
            specProblem = judgement.isAllowed ? nil : judgement.message
            let issuerName = pki.spec.issuer ?? policy.defaultIssuer
            var issuer: IssuerCertificates?
            if let reference = policy.issuers[issuerName] {
                do {
                    if let caSecret: Secret = try client.getIfPresent(.secrets, namespace: reference.namespace, name: reference.name),
                       let chain = try? Certificate.chain(pem: caSecret.bytes("tls.crt") ?? []), !chain.isEmpty {
                        issuer = IssuerCertificates(tlsChain: chain, caPEM: caSecret.bytes("ca.crt"))
                        judgedWith = "the policy and the CA of issuer \"\(issuerName)\" (\(reference.namespace)/\(reference.name))"
                    } else {
                        judgedWith = "the policy; the CA Secret \(reference.namespace)/\(reference.name) of issuer \"\(issuerName)\" does not exist or holds no certificate"
                    }
                } catch {
                    judgedWith = "the policy; the CA Secret \(reference.namespace)/\(reference.name) could not be read (\(FailureReporter.reason(of: error))), so the issuer is taken from the Secret's own chain"
                }
            } else {
                judgedWith = "the policy, which has no issuer \"\(issuerName)\""
            }
            if issuer == nil, let chain = try? Certificate.chain(pem: secretRead?.bytes("tls.crt") ?? []), chain.count > 1 {
                let roots = (try? Certificate.chain(pem: secretRead?.bytes("ca.crt") ?? [])) ?? []
                issuer = IssuerCertificates(certificate: chain[1], chain: Array(chain.dropFirst(2)), root: roots.first)
            }
            if secretRead == nil {
                verdict = specProblem == nil ? "none yet (the Secret does not exist)" : "none: certgate issues nothing while the spec is refused"
            } else if let issuer {
                issuerRoots = [issuer.root]
                let (_, found) = CertificateCheck.judge(chainPEM: secretRead?.bytes("tls.crt"), keyPEM: secretRead?.bytes("tls.key"),
                                                        caPEM: secretRead?.bytes("ca.crt"), spec: pki.spec, policy: policy,
                                                        authority: issuer, issuerName: issuerName, now: now)
                switch found {
                case .upToDate(let renewal): verdict = "matches the spec; renewed at \(formatUTC(Int(renewal), "%Y-%m-%dT%H:%M:%SZ"))"
                case .renewalDue: verdict = "matches the spec; its renewal time has passed"
                case .reissue(let why): verdict = "to be issued again: \(why)"
                }
            } else {
                verdict = "not judged: no issuer certificate to judge it by"
            }
        }
        var secret = SecretReport.read(secretRead, namespace: namespace, name: secretName, extraRoots: issuerRoots, now: now)
        if let secretProblem { secret.problem = secretProblem }

        let pods = ((try? client.list(.pods, namespace: namespace, of: Pod.self).items) ?? [])
            .filter { !$0.hasFinished && $0.secretNames.contains(secretName) }.compactMap(\.metadata.name).sorted()
        let events = ((try? client.list(.events, namespace: namespace,
                                        options: ListOptions(fieldSelector: "involvedObject.kind=Pki,involvedObject.name=\(name)"),
                                        of: Event.self).items) ?? [])
            .sorted { ($0.lastTimestamp ?? "", $0.metadata.name ?? "") < ($1.lastTimestamp ?? "", $1.metadata.name ?? "") }
            .suffix(10)
            .map { PkiStatusReport.EventLine(type: $0.type ?? "", reason: $0.reason ?? "", message: $0.message ?? "", count: $0.count ?? 1,
                                             lastSeen: $0.lastTimestamp) }
        return PkiStatusReport(namespace: namespace, name: name, ready: conditions.first { $0.type == "Ready" }?.status ?? "Unknown",
                               conditions: conditions, renewalTime: pki.status?.renewalTime, secret: secret, specProblem: specProblem,
                               certificateVerdict: verdict, judgedWith: judgedWith, pods: pods, events: Array(events))
    }
}

// MARK: Text

extension CertificateReport {
    /// "  Label:  value" lines, indented by `indent`.
    func lines(renewalTime: String?, indent: String) -> [String] {
        var rows: [(String, String)] = [("Subject", subject.map { "CN=\($0)" } ?? "(no common name)")]
        if !dnsNames.isEmpty { rows.append(("DNS names", dnsNames.joined(separator: ", "))) }
        if !ipAddresses.isEmpty { rows.append(("IP addresses", ipAddresses.joined(separator: ", "))) }
        if !uris.isEmpty { rows.append(("URIs", uris.joined(separator: ", "))) }
        if !emailAddresses.isEmpty { rows.append(("Emails", emailAddresses.joined(separator: ", "))) }
        rows += [("Key", keyAlgorithm), ("Issuer", issuer.map { "CN=\($0)" } ?? "(no common name)"), ("Serial", serialNumber),
                 ("Not before", notBefore), ("Not after", notAfter)]
        if let renewalTime { rows.append(("Renewal", renewalTime)) }
        rows.append(("Chain", chainVerifies ? chainDetail : "does NOT verify: \(chainDetail)"))
        return rows.map { indent + ($0.0 + ":").padded(to: 14) + $0.1 }
    }
}

extension SecretReport {
    public func text(renewalTime: String? = nil) -> String {
        var lines = ["Secret \(namespace)/\(name):"]
        if let problem { lines.append("  \(problem)") }
        if let certificate { lines += certificate.lines(renewalTime: renewalTime, indent: "  ") }
        return lines.joined(separator: "\n") + "\n"
    }
}

extension PkiStatusReport {
    /// One screen for a terminal.
    public var text: String {
        let readyCondition = conditions.first { $0.type == "Ready" }
        var lines = ["Pki \(namespace)/\(name): " + (ready == "True" ? "Ready" : ready == "False" ? "not Ready" : "not yet reconciled")
                     + (readyCondition.map { " (\($0.reason ?? "")): \($0.message ?? "")" } ?? "")]
        lines.append("Conditions:")
        if conditions.isEmpty { lines.append("  none yet (is certgate's reconciler running?)") }
        for condition in conditions {
            lines.append("  \(condition.type.padded(to: 8)) \(condition.status.padded(to: 6)) "
                         + "\(condition.reason ?? "")  \(condition.message ?? "")" + (condition.lastTransitionTime.map { " (since \($0))" } ?? ""))
        }
        lines.append(secret.text(renewalTime: renewalTime).trimmingWhitespace())
        lines.append("Spec and policy: " + (specProblem.map { "refused: \($0)" } ?? (judgedWith == "no policy" ? "not judged" : "allowed")))
        lines.append("Certificate: \(certificateVerdict)")
        if !judgedWith.isEmpty && judgedWith != "no policy" { lines.append("  (judged with \(judgedWith))") }
        lines.append("Pods using the Secret: " + (pods.isEmpty ? "none" : pods.joined(separator: ", ")))
        lines.append("Events:" + (events.isEmpty ? " none" : ""))
        for event in events {
            lines.append("  \(event.lastSeen ?? "")  \(event.type.padded(to: 7)) \(event.reason)"
                         + (event.count > 1 ? " (x\(event.count))" : "") + ": \(event.message)")
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

extension String {
    /// Spaces after the text up to `width` characters.
    fileprivate func padded(to width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}
