import CertgateCrypto
import CertgateJSON

/// What the rules found: violations deny the Pki; warnings are shown and let it through.
public struct Judgement: Sendable, Equatable {
    /// In a stable order: field order of the spec, list elements by index.
    public var violations: [FieldProblem] = []
    /// Each at most ``Judgement/maxWarningLength`` characters, all together under ``Judgement/maxWarningsLength``.
    public var warnings: [String] = []

    public init(violations: [FieldProblem] = [], warnings: [String] = []) {
        self.violations = violations
        self.warnings = warnings
    }

    public var isAllowed: Bool { violations.isEmpty }

    /// The denial message kubectl prints after "denied the request:", one violation a line.
    public var message: String { String(decoding: messageUTF8, as: UTF8.self) }

    /// ``message`` as UTF-8, as the webhook writes it into its answer.
    public var messageUTF8: [UInt8] {
        // One allocation for the whole text: joining it with `+=` grew it piece by piece.
        var bytes: [UInt8] = []
        bytes.reserveCapacity(violations.reduce(0) { $0 + $1.pathUTF8.count + $1.messageUTF8.count + 3 })
        for (index, violation) in violations.enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: "\n")) }
            violation.append(to: &bytes)
        }
        return bytes
    }

    /// kubectl prints each warning on its own "Warning: " line.
    public static let maxWarningLength = 120
    /// The API server truncates warnings past 4 KiB in all.
    public static let maxWarningsLength = 4096
}

/// The usages spec.usages may name.
public let knownUsages = ["server auth", "client auth", "digital signature", "key encipherment"]

/// Judges a Pki against the policy for the namespace it lives in. Pure: the same inputs
/// always give the same judgement, so the webhook, the reconciler and `certgate validate`
/// agree. `previous` is the object being replaced, on UPDATE.
public func judge(_ pki: Pki, namespace: String, policy: Policy, previous: Pki? = nil) -> Judgement {
    var rules = RuleRun(policy: policy)
    rules.violations += pki.problems
    let spec = pki.spec
    rules.checkServiceName(spec.serviceName, namespace: namespace)
    if let secretName = spec.secretName, !isValidObjectName(secretName) {
        rules.deny("spec.secretName", "\"\(secretName)\" is not a valid Secret name (lower-case letters, digits, '-' and '.', "
            + "starting and ending with a letter or digit, at most 253 characters)")
    }
    rules.checkSubject(spec)
    rules.checkIdentities(spec, namespace: namespace)
    let duration = rules.checkDuration(spec.duration)
    rules.checkRenewBefore(spec.renewBefore, duration: duration, durationText: spec.duration ?? formatDuration(policy.defaultDuration))
    rules.checkPrivateKey(spec.privateKey)
    rules.checkSecretTemplate(spec.secretTemplate)
    rules.checkKeystores(spec.keystores)
    for (index, usage) in (spec.usages ?? []).enumerated() where !knownUsages.contains(usage) {
        rules.deny("spec.usages[\(index)]", "\"\(usage)\" is not a known usage; use one of [\(knownUsages.joined(separator: ", "))]")
    }
    if let rotation = spec.rotationPolicy, !["Always", "Never"].contains(rotation) {
        rules.deny("spec.rotationPolicy", "\"\(rotation)\" is not a rotation policy; use Always (a new key at each renewal) or Never"
            + didYouMean(rotation, ["Always", "Never"]))
    }
    if let issuer = spec.issuer, policy.issuers[issuer] == nil {
        let names = policy.issuers.keys.sorted()
        rules.deny("spec.issuer", "\"\(issuer)\" is not an issuer of the policy; use one of \(bracketed: names)"
            + didYouMean(issuer, names))
    }
    if let previous {
        // Ratcheting, as Kubernetes does for CRD schemas (KEP-4008): an update is judged on
        // what it changes. A rule the object already broke, on a value this update leaves
        // as it was, warns instead of denying, so labels, annotations, finalizers and
        // status still go through; the reconciler keeps reporting it as InvalidSpec.
        let brokenBefore = Set(judge(previous, namespace: namespace, policy: policy).violations.map(\.ratchetKey))
        let inherited = rules.violations.filter { brokenBefore.contains($0.ratchetKey) }
        rules.violations.removeAll { brokenBefore.contains($0.ratchetKey) }
        for violation in inherited {
            rules.warn("unchanged by this update, so allowed: \(violation.path): \(violation.message)")
        }
        let before = previous.spec
        if (before.secretName ?? previous.metadata.name) != (spec.secretName ?? pki.metadata.name) {
            rules.warn("spec.secretName: changed from \(quoted(before.secretName ?? previous.metadata.name)) to "
                + "\(quoted(spec.secretName ?? pki.metadata.name)); the old Secret is left as it is")
        }
        if (before.issuer ?? policy.defaultIssuer) != (spec.issuer ?? policy.defaultIssuer) {
            rules.warn("spec.issuer: changed from \(quoted(before.issuer ?? policy.defaultIssuer)) to "
                + "\(quoted(spec.issuer ?? policy.defaultIssuer)); the certificate is re-issued by the new CA")
        }
    }
    return rules.judgement
}

private struct RuleRun {
    let policy: Policy
    var violations: [FieldProblem] = []
    var warnings: [String] = []
    private var warningsLength = 0

    init(policy: Policy) {
        self.policy = policy
    }

    var judgement: Judgement { Judgement(violations: violations, warnings: warnings) }

    mutating func deny(_ path: MessageText, _ message: MessageText) {
        violations.append(FieldProblem(path: path, message: message))
    }

    /// Adds a warning cut to 120 characters; past 4 KiB in all, further ones are dropped.
    mutating func warn(_ text: String) {
        var line = text
        if line.count > Judgement.maxWarningLength { line = String(line.prefix(Judgement.maxWarningLength - 3)) + "..." }
        guard warningsLength + line.utf8.count < Judgement.maxWarningsLength else { return }
        warningsLength += line.utf8.count
        warnings.append(line)
    }

    mutating func checkServiceName(_ serviceName: String?, namespace: String) {
        let allowed = policy.allowedServiceNames(in: namespace)
        guard let serviceName, !serviceName.isEmpty else {
            deny("spec.serviceName", allowed.isEmpty
                ? "required, and the policy allows no service names for namespace \(namespace)"
                : "required; the allowed names for namespace \(namespace) are \(bracketed: allowed)")
            return
        }
        guard !allowed.contains(serviceName) else { return }
        if allowed.isEmpty {
            deny("spec.serviceName", "\"\(serviceName)\" is not allowed: the policy allows no service names for namespace \(namespace)")
        } else {
            deny("spec.serviceName", "\"\(serviceName)\" is not in the allowed names \(bracketed: allowed) for namespace \(namespace)"
                + didYouMean(serviceName, allowed))
        }
    }

    mutating func checkSubject(_ spec: PkiSpec) {
        if let commonName = spec.commonName, commonName.utf8.count > 64 {
            deny("spec.commonName", "\(commonName.utf8.count) bytes is longer than the 64 bytes a certificate's common name may have; "
                + "put long names in spec.dnsNames")
        }
        let suffixes = policy.dnsSuffixes
        // Paths are made only for a denial: most names are fine.
        for (index, name) in (spec.dnsNames ?? []).enumerated() {
            if let problem = dnsNameProblem(name) {
                deny("spec.dnsNames[\(index)]", "\"\(name)\" is not a valid DNS name: \(problem)")
            } else if !suffixes.contains(where: { hasSuffixIgnoringASCIICase(name, $0) }) {
                deny("spec.dnsNames[\(index)]", suffixes.isEmpty ? "\"\(name)\" is not allowed: the policy allows no DNS names"
                    : "\"\(name)\" is not under an allowed suffix \(bracketed: suffixes)")
            }
        }
        for (index, text) in (spec.ipAddresses ?? []).enumerated() {
            guard let address = parseIPAddress(text) else {
                deny("spec.ipAddresses[\(index)]", "\"\(text)\" is not an IPv4 or IPv6 address")
                continue
            }
            if !policy.ipRanges.contains(where: { $0.contains(address) }) {
                deny("spec.ipAddresses[\(index)]", policy.ipRanges.isEmpty ? "\(text) is not allowed: the policy allows no IP addresses"
                    : "\(text) is not in an allowed range \(bracketed: policy.ipRanges.map(\.description))")
            }
        }
        let hasName = !(spec.commonName ?? "").isEmpty || !(spec.dnsNames ?? []).isEmpty || !(spec.ipAddresses ?? []).isEmpty
            || !(spec.uris ?? []).isEmpty || !(spec.emailAddresses ?? []).isEmpty
        if !hasName {
            deny("spec", "at least one of commonName, dnsNames, ipAddresses, uris or emailAddresses is required")
        }
        if let commonName = spec.commonName, !commonName.isEmpty, !(spec.dnsNames ?? []).contains(commonName),
           !(spec.ipAddresses ?? []).contains(commonName) {
            warn("spec.commonName: \(quoted(commonName)) is not among spec.dnsNames; clients check dnsNames, not the common name")
        }
    }

    /// Returns the duration in seconds (the policy default when unset), or nil when it is invalid.
    mutating func checkDuration(_ text: String?) -> Double? {
        guard let text else { return policy.defaultDuration }
        guard let seconds = parseGoDuration(text), seconds > 0 else {
            deny("spec.duration", "\"\(text)\" is not a duration; write hours, minutes or seconds such as 2160h, 90m or 1h30m")
            return nil
        }
        if seconds < policy.minimumDuration {
            deny("spec.duration", "\(text) is shorter than the minimum \(formatDuration(policy.minimumDuration)) the policy allows")
        } else if seconds > policy.maximumDuration {
            deny("spec.duration", "\(text) is longer than the maximum \(formatDuration(policy.maximumDuration)) the policy allows")
        } else if seconds >= 365 * 86400 {
            warn("spec.duration: \(text) is longer than the recommended \(formatDuration(policy.defaultDuration))")
        }
        return seconds
    }

    mutating func checkRenewBefore(_ text: String?, duration: Double?, durationText: String) {
        guard let text else { return }
        guard let seconds = parseGoDuration(text), seconds > 0 else {
            deny("spec.renewBefore", "\"\(text)\" is not a duration; write hours, minutes or seconds such as 720h, 90m or 1h30m")
            return
        }
        guard let duration else { return }
        if seconds >= duration {
            deny("spec.renewBefore", "\(text) must be shorter than spec.duration \(durationText)")
        } else if seconds < duration / 10 {
            warn("spec.renewBefore: \(text) is under a tenth of spec.duration \(durationText); a failed renewal leaves little time")
        } else if seconds > duration / 2 {
            warn("spec.renewBefore: \(text) is over half of spec.duration \(durationText); the certificate is renewed very often")
        }
    }

    /// URIs against the policy's prefixes, email addresses by their syntax, and the subject's
    /// attributes (organizations against the policy's).
    mutating func checkIdentities(_ spec: PkiSpec, namespace: String) {
        let uris = spec.uris ?? []
        let prefixes = uris.isEmpty ? [] : policy.allowedURIPrefixes(in: namespace, serviceName: spec.serviceName)
        for (index, uri) in uris.enumerated() {
            let path = "spec.uris[\(index)]"
            if let problem = uriProblem(uri) {
                deny("\(path)", "\(quoted: uri) is not a URI: \(problem)")
            } else if !prefixes.contains(where: { Policy.uri(uri, isUnder: $0) }) {
                deny("\(path)", prefixes.isEmpty ? "\(quoted: uri) is not allowed: the policy allows no URIs for namespace \(namespace)"
                    : "\(quoted: uri) is not under an allowed prefix \(bracketed: prefixes) for namespace \(namespace)"
                        + didYouMean(uri, prefixes))
            }
        }
        for (index, address) in (spec.emailAddresses ?? []).enumerated() {
            if let problem = emailAddressProblem(address) {
                deny("spec.emailAddresses[\(index)]", "\(quoted: address) is not an email address: \(problem)")
            }
        }
        guard let subject = spec.subject else { return }
        for (index, organization) in (subject.organizations ?? []).enumerated() where !policy.organizations.contains(organization) {
            deny("spec.subject.organizations[\(index)]", policy.organizations.isEmpty
                ? "\(quoted: organization) is not allowed: the policy allows no subject organizations"
                : "\(quoted: organization) is not an allowed organization \(bracketed: policy.organizations.map { quoted($0) })"
                    + didYouMean(organization, policy.organizations))
        }
        for (index, country) in (subject.countries ?? []).enumerated()
        where country.utf8.count != 2 || !country.utf8.allSatisfy({ $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") }) {
            deny("spec.subject.countries[\(index)]", "\(quoted: country) is not a country code; use the two capital letters of ISO 3166, such as DE or US")
        }
        let limits: [(String, [String]?, Int)] = [("organizationalUnits", subject.organizationalUnits, 64),
                                                   ("localities", subject.localities, 128), ("provinces", subject.provinces, 128)]
        for (field, values, limit) in limits {
            for (index, value) in (values ?? []).enumerated() {
                let path = "spec.subject.\(field)[\(index)]"
                if value.isEmpty { deny("\(path)", "empty; remove it or give it a value") }
                else if value.utf8.count > limit { deny("\(path)", "\(value.utf8.count) bytes is longer than the \(limit) a certificate allows") }
                else if value.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) { deny("\(path)", "holds a control character") }
            }
        }
    }

    mutating func checkSecretTemplate(_ template: SecretTemplate?) {
        guard let template else { return }
        for (key, value) in (template.labels ?? [:]).sorted(by: { $0.key < $1.key }) {
            let path = "spec.secretTemplate.labels[\(key)]"
            if let problem = qualifiedNameProblem(key) {
                deny("\(path)", "\(quoted: key) is not a valid label key: \(problem)")
            } else if let problem = labelValueProblem(value) {
                deny("\(path)", "\(quoted: value) is not a valid label value: it \(problem)")
            } else if SecretTemplate.ownedLabels.contains(key) {
                warn("\(path): certgate sets this label itself (to the Pki's name); the template's value is not used")
            }
        }
        var annotationBytes = 0
        for (key, value) in (template.annotations ?? [:]).sorted(by: { $0.key < $1.key }) {
            let path = "spec.secretTemplate.annotations[\(key)]"
            annotationBytes += key.utf8.count + value.utf8.count
            if let problem = qualifiedNameProblem(key) {
                deny("\(path)", "\(quoted: key) is not a valid annotation key: \(problem)")
            } else if SecretTemplate.ownedAnnotations.contains(key) {
                warn("\(path): certgate sets this annotation itself; the template's value is not used")
            }
        }
        if annotationBytes > SecretTemplate.maximumAnnotationBytes {
            deny("spec.secretTemplate.annotations", "\(annotationBytes) bytes in all, more than the \(SecretTemplate.maximumAnnotationBytes) "
                + "a Kubernetes object's annotations may hold")
        }
    }

    mutating func checkKeystores(_ keystores: KeystoresSpec?) {
        guard let pkcs12 = keystores?.pkcs12 else { return }
        let path = "spec.keystores.pkcs12.passwordSecretRef"
        if let profile = pkcs12.profile, !KeystoresSpec.profiles.contains(profile) {
            deny("spec.keystores.pkcs12.profile", "\(quoted: profile) is not a profile; use Modern2023 (AES-256-CBC, the default) "
                + "or LegacyRC2 (RC2 and 3DES, only for Java before 8u301)" + didYouMean(profile, KeystoresSpec.profiles))
        }
        guard let reference = pkcs12.passwordSecretRef else {
            deny("\(path)", "required: name the Secret and key in this namespace that hold the keystore password, "
                + "such as {name: app1-keystore-password, key: password}")
            return
        }
        if let name = reference.name, !name.isEmpty {
            if !isValidObjectName(name) { deny("\(path).name", "\(quoted: name) is not a valid Secret name") }
        } else {
            deny("\(path).name", "required: the Secret in this namespace that holds the keystore password")
        }
        if let key = reference.key, !key.isEmpty {
            if !isValidSecretDataKey(key) {
                deny("\(path).key", "\(quoted: key) is not a valid Secret key (letters, digits, '-', '_' and '.', at most 253 characters)")
            }
        } else {
            deny("\(path).key", "required: the key of the Secret that holds the password, such as password")
        }
    }

    mutating func checkPrivateKey(_ key: PrivateKeySpec?) {
        guard let key else { return }
        let algorithm = key.algorithm ?? "ECDSA"
        guard policy.keyAlgorithms.contains(algorithm) else {
            deny("spec.privateKey.algorithm", "\"\(algorithm)\" is not allowed; use one of \(bracketed: policy.keyAlgorithms)"
                + didYouMean(algorithm, policy.keyAlgorithms))
            return
        }
        switch algorithm {
        case "ECDSA":
            if let size = key.size, ![256, 384].contains(size) {
                deny("spec.privateKey.size", "\(size) is not an ECDSA size; use 256 or 384")
            }
        case "RSA":
            let sizes = Policy.rsaSizes.filter { $0 >= policy.minimumRSASize }
            let size = key.size ?? policy.defaultRSASize
            if !sizes.contains(size) {
                deny("spec.privateKey.size", "\(size) is not an allowed RSA size; use one of \(bracketed: sizes.map(String.init))")
            } else {
                warn("spec.privateKey: RSA \(size) is slower and larger than ECDSA 256, which current TLS clients all accept")
            }
        case "Ed25519":
            if key.size != nil {
                deny("spec.privateKey.size", "Ed25519 keys have no size; remove spec.privateKey.size")
            }
        default:
            break
        }
    }
}

private func didYouMean(_ value: String, _ candidates: [String]) -> MessageText {
    guard let match = closestMatch(to: value, among: candidates) else { return "" }
    return " (did you mean \"\(match)\"?)"
}

private func quoted(_ value: String?) -> String {
    value.map { "\"\($0)\"" } ?? "(none)"
}
