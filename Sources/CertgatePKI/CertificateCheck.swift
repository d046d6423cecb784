import CertgateCrypto

/// Whether the certificate and key a Secret holds still serve a Pki, and if not, why. The
/// reconciler decides from this, not from a generation counter: whatever went wrong in an
/// earlier pass, the Secret itself says what is left to do (cert-manager's certificates
/// controller decides the same way, from its "issuing" checks).
public enum CertificateCheck {
    public enum Verdict: Equatable, Sendable {
        /// Serves the spec; renew at this time (seconds since 1970).
        case upToDate(renewal: Int64)
        /// Serves the spec, but its renewal time has come.
        case renewalDue
        /// Must be issued again, for this reason (said in the Event).
        case reissue(String)

        public var isUpToDate: Bool {
            if case .upToDate = self { return true }
            return false
        }
    }

    /// What a Secret holds, parsed.
    public struct Held: Sendable {
        public let leaf: Certificate
        public let key: PrivateKey
    }

    /// How far the certificate's lifetime may stray from spec.duration (plus the backdate)
    /// before it counts as issued for another duration: clocks and rounding, not intent.
    public static let durationTolerance: Int64 = 120

    /// Judges the `tls.crt`, `tls.key` and `ca.crt` of a Secret against `spec`, as `authority`
    /// (the spec's issuer, named `issuerName` in reasons) would issue it under `policy` at `now`.
    public static func judge(chainPEM: [UInt8]?, keyPEM: [UInt8]?, caPEM: [UInt8]?, spec: PkiSpec, policy: Policy,
                             authority: IssuerCertificates, issuerName: String, now: Int64) -> (held: Held?, verdict: Verdict) {
        guard let chainPEM, !chainPEM.isEmpty else { return (nil, .reissue("the Secret holds no certificate")) }
        guard let leaf = try? Certificate.chain(pem: chainPEM).first else { return (nil, .reissue("tls.crt does not parse")) }
        guard let keyPEM, let key = try? PrivateKey(pem: keyPEM) else { return (nil, .reissue("tls.key is missing or does not parse")) }
        guard leaf.matches(key) else { return (nil, .reissue("tls.key is not the key of tls.crt")) }
        let held = Held(leaf: leaf, key: key)
        if let reason = difference(leaf, caPEM: caPEM, spec: spec, policy: policy, authority: authority, issuerName: issuerName) {
            return (held, .reissue(reason))
        }
        let renewal = renewalTime(of: leaf, spec: spec, policy: policy)
        return (held, now >= renewal ? .renewalDue : .upToDate(renewal: renewal))
    }

    /// When a certificate for `spec` is renewed: spec.renewBefore (a third of the duration
    /// by default) before it ends.
    public static func renewalTime(of leaf: Certificate, spec: PkiSpec, policy: Policy) -> Int64 {
        Issuance.renewalTime(notBefore: leaf.notBefore, notAfter: leaf.notAfter, spec: spec, policy: policy)
    }

    /// The first way `leaf` is not what the spec asks, in the words of the Event that says so.
    private static func difference(_ leaf: Certificate, caPEM: [UInt8]?, spec: PkiSpec, policy: Policy,
                                   authority: IssuerCertificates, issuerName: String) -> String? {
        guard leaf.isSigned(by: authority.certificate) else {
            return "the certificate was not signed by the current CA of issuer \"\(issuerName)\""
        }
        let bundle = caPEM.flatMap { try? Certificate.chain(pem: $0) } ?? []
        let rootPEM = try? authority.root.pem()
        guard bundle.contains(where: { (try? $0.pem()) == rootPEM }) else {
            return "ca.crt does not hold the current root of issuer \"\(issuerName)\""
        }
        let names = leaf.subjectAlternativeNames
        let wantedNames = Set(spec.dnsNames ?? [])
        if Set(names.dnsNames) != wantedNames {
            return "its DNS names \(names.dnsNames.sorted()) are not spec.dnsNames \(wantedNames.sorted())"
        }
        let wantedAddresses = Set((spec.ipAddresses ?? []).map { parseIPAddress($0).flatMap(formatIPAddress) ?? $0 })
        if Set(names.ipAddresses) != wantedAddresses {
            return "its IP addresses \(names.ipAddresses.sorted()) are not spec.ipAddresses \(wantedAddresses.sorted())"
        }
        if Set(names.uris) != Set(spec.uris ?? []) {
            return "its URIs \(names.uris.sorted()) are not spec.uris \((spec.uris ?? []).sorted())"
        }
        if Set(names.emailAddresses) != Set(spec.emailAddresses ?? []) {
            return "its email addresses \(names.emailAddresses.sorted()) are not spec.emailAddresses \((spec.emailAddresses ?? []).sorted())"
        }
        if leaf.subjectAttributes != Issuance.subjectAttributes(spec.subject) {
            return "its subject is not what spec.subject asks for"
        }
        if leaf.commonName != spec.commonName {
            return "its common name \(leaf.commonName.map { "\"\($0)\"" } ?? "(none)") is not spec.commonName "
                + (spec.commonName.map { "\"\($0)\"" } ?? "(none)")
        }
        let wantedAlgorithm = Issuance.keyAlgorithm(spec.privateKey, policy: policy)
        if let algorithm = leaf.keyAlgorithm, algorithm != wantedAlgorithm {
            return "its key is \(algorithm), spec.privateKey asks for \(wantedAlgorithm)"
        }
        let usages = spec.usages ?? Issuance.defaultUsages
        let wantedExtended = Issuance.extendedKeyUsages(usages)
        if leaf.extendedKeyUsages != Set(wantedExtended) || leaf.allowsKeyEncipherment != usages.contains("key encipherment") {
            return "its usages are not spec.usages \(usages)"
        }
        let duration = Int64(spec.duration.flatMap(parseGoDuration) ?? policy.defaultDuration)
        let lifetime = leaf.notAfter - leaf.notBefore
        // A leaf cut short by its issuer's own end is as long as it can be.
        let cappedByIssuer = leaf.notAfter == authority.notAfter
        if abs(lifetime - (duration + Issuance.backdate)) > durationTolerance && !cappedByIssuer {
            return "it is valid for \(formatDuration(Double(lifetime - Issuance.backdate))), spec.duration asks for "
                + formatDuration(Double(duration))
        }
        return nil
    }
}
