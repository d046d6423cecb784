import CertgateCrypto
@testable import CertgatePKI
import Testing

let policy = Policy(
    serviceNames: ["shared-cache"], namespaces: ["app1": ["app1", "app2"]],
    dnsSuffixes: [".svc", ".svc.cluster.local"], ipRanges: [IPRange("10.0.0.0/8")!, IPRange("fd00::/8")!],
    minimumDuration: 3600, maximumDuration: 8760 * 3600, defaultDuration: 2160 * 3600,
    issuers: ["default": SecretReference(namespace: "certgate", name: "ca"), "internal": SecretReference(namespace: "certgate", name: "internal-ca")])

/// A Pki that passes every rule; cases change one field.
func goodSpec() -> PkiSpec {
    PkiSpec(serviceName: "app1", dnsNames: ["app1.app1.svc", "app1.app1.svc.cluster.local"], duration: "2160h",
            renewBefore: "720h", privateKey: PrivateKeySpec(algorithm: "ECDSA", size: 256), usages: ["server auth"])
}

func judged(_ change: (inout PkiSpec) -> Void, namespace: String = "app1") -> Judgement {
    var spec = goodSpec()
    change(&spec)
    return judge(Pki(metadata: ObjectMeta(name: "app1-pki", namespace: namespace), spec: spec), namespace: namespace, policy: policy)
}

struct RuleCase: Sendable, CustomTestStringConvertible {
    let name: String
    let change: @Sendable (inout PkiSpec) -> Void
    let violation: String
    var testDescription: String { name }
}

let denials: [RuleCase] = [
    RuleCase(name: "the recorded typo", change: { $0.serviceName = "appp1" },
             violation: "spec.serviceName: \"appp1\" is not in the allowed names [app1 app2 shared-cache] for namespace app1 (did you mean \"app1\"?)"),
    RuleCase(name: "no service name", change: { $0.serviceName = nil },
             violation: "spec.serviceName: required; the allowed names for namespace app1 are [app1 app2 shared-cache]"),
    RuleCase(name: "a far-off service name has no suggestion", change: { $0.serviceName = "billing" },
             violation: "spec.serviceName: \"billing\" is not in the allowed names [app1 app2 shared-cache] for namespace app1"),
    RuleCase(name: "bad Secret name", change: { $0.secretName = "App1_TLS" },
             violation: "spec.secretName: \"App1_TLS\" is not a valid Secret name (lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters)"),
    RuleCase(name: "long common name", change: { $0.commonName = String(repeating: "a", count: 65) + ".svc" },
             violation: "spec.commonName: 69 bytes is longer than the 64 bytes a certificate's common name may have; put long names in spec.dnsNames"),
    RuleCase(name: "invalid DNS name", change: { $0.dnsNames = ["app1.app1.svc", "app_1.svc"] },
             violation: "spec.dnsNames[1]: \"app_1.svc\" is not a valid DNS name: its label \"app_1\" has '_'; labels hold only letters, digits and '-'"),
    RuleCase(name: "wildcard not leftmost", change: { $0.dnsNames = ["app1.*.svc"] },
             violation: "spec.dnsNames[0]: \"app1.*.svc\" is not a valid DNS name: '*' may stand only as the whole leftmost label, as in \"*.app1.svc\""),
    RuleCase(name: "DNS label too long", change: { $0.dnsNames = [String(repeating: "a", count: 64) + ".app1.svc"] },
             violation: "spec.dnsNames[0]: \"\(String(repeating: "a", count: 64)).app1.svc\" is not a valid DNS name: its label \"aaaaaaaaaaaaaaaaaaaa...\" is 64 bytes long; a label has at most 63"),
    RuleCase(name: "DNS name too long", change: { $0.dnsNames = [Array(repeating: String(repeating: "a", count: 61), count: 4).joined(separator: ".") + ".app1.svc"] },
             violation: "spec.dnsNames[0]: \"\(Array(repeating: String(repeating: "a", count: 61), count: 4).joined(separator: ".")).app1.svc\" is not a valid DNS name: it is 256 bytes long; a DNS name has at most 253"),
    RuleCase(name: "DNS label ending in a hyphen", change: { $0.dnsNames = ["app1-.app1.svc"] },
             violation: "spec.dnsNames[0]: \"app1-.app1.svc\" is not a valid DNS name: its label \"app1-\" ends with '-'; a label starts and ends with a letter or digit"),
    RuleCase(name: "DNS name with an empty label", change: { $0.dnsNames = ["app1..app1.svc"] },
             violation: "spec.dnsNames[0]: \"app1..app1.svc\" is not a valid DNS name: it has an empty label (two dots in a row)"),
    RuleCase(name: "DNS name outside the suffixes", change: { $0.dnsNames = ["app1.example.com"] },
             violation: "spec.dnsNames[0]: \"app1.example.com\" is not under an allowed suffix [.svc .svc.cluster.local]"),
    RuleCase(name: "invalid IP", change: { $0.ipAddresses = ["10.0.0.300"] },
             violation: "spec.ipAddresses[0]: \"10.0.0.300\" is not an IPv4 or IPv6 address"),
    // A C string ends at the NUL: the address once passed as 10.0.0.1 and every SAN after it was dropped.
    RuleCase(name: "IP with a NUL inside", change: { $0.ipAddresses = ["10.0.0.1\u{0},DNS:other.svc"] },
             violation: "spec.ipAddresses[0]: \"10.0.0.1\u{0},DNS:other.svc\" is not an IPv4 or IPv6 address"),
    RuleCase(name: "unknown rotation policy", change: { $0.rotationPolicy = "never" },
             violation: "spec.rotationPolicy: \"never\" is not a rotation policy; use Always (a new key at each renewal) or Never (did you mean \"Never\"?)"),
    RuleCase(name: "IP outside the ranges", change: { $0.ipAddresses = ["10.1.2.3", "192.168.1.1"] },
             violation: "spec.ipAddresses[1]: 192.168.1.1 is not in an allowed range [10.0.0.0/8 fd00::/8]"),
    RuleCase(name: "no name at all", change: { $0.dnsNames = nil },
             violation: "spec: at least one of commonName, dnsNames, ipAddresses, uris or emailAddresses is required"),
    RuleCase(name: "duration not Go syntax", change: { $0.duration = "90 days" },
             violation: "spec.duration: \"90 days\" is not a duration; write hours, minutes or seconds such as 2160h, 90m or 1h30m"),
    RuleCase(name: "duration too long", change: { $0.duration = "9000h" },
             violation: "spec.duration: 9000h is longer than the maximum 8760h the policy allows"),
    RuleCase(name: "duration too short", change: { $0.duration = "30m"; $0.renewBefore = nil },
             violation: "spec.duration: 30m is shorter than the minimum 1h the policy allows"),
    RuleCase(name: "renewBefore not shorter", change: { $0.renewBefore = "2160h" },
             violation: "spec.renewBefore: 2160h must be shorter than spec.duration 2160h"),
    RuleCase(name: "renewBefore against the default duration", change: { $0.duration = nil; $0.renewBefore = "3000h" },
             violation: "spec.renewBefore: 3000h must be shorter than spec.duration 2160h"),
    RuleCase(name: "unknown algorithm", change: { $0.privateKey = PrivateKeySpec(algorithm: "ECDSSA", size: 256) },
             violation: "spec.privateKey.algorithm: \"ECDSSA\" is not allowed; use one of [ECDSA RSA Ed25519] (did you mean \"ECDSA\"?)"),
    RuleCase(name: "ECDSA size", change: { $0.privateKey = PrivateKeySpec(algorithm: "ECDSA", size: 521) },
             violation: "spec.privateKey.size: 521 is not an ECDSA size; use 256 or 384"),
    RuleCase(name: "RSA size", change: { $0.privateKey = PrivateKeySpec(algorithm: "RSA", size: 1024) },
             violation: "spec.privateKey.size: 1024 is not an allowed RSA size; use one of [2048 3072 4096]"),
    RuleCase(name: "Ed25519 with a size", change: { $0.privateKey = PrivateKeySpec(algorithm: "Ed25519", size: 256) },
             violation: "spec.privateKey.size: Ed25519 keys have no size; remove spec.privateKey.size"),
    RuleCase(name: "unknown usage", change: { $0.usages = ["server auth", "code signing"] },
             violation: "spec.usages[1]: \"code signing\" is not a known usage; use one of [server auth, client auth, digital signature, key encipherment]"),
    RuleCase(name: "unknown issuer", change: { $0.issuer = "defualt" },
             violation: "spec.issuer: \"defualt\" is not an issuer of the policy; use one of [default internal] (did you mean \"default\"?)"),
]

@Suite struct RulesTests {
    @Test func aGoodSpecPassesWithoutWarnings() {
        #expect(judged { _ in } == Judgement())
        #expect(judged({ $0.serviceName = "shared-cache" }, namespace: "app1").isAllowed)
        #expect(judged { $0.dnsNames = ["*.app1.svc"]; $0.ipAddresses = ["10.0.0.1", "fd00::1"] }.isAllowed)
        #expect(judged { $0.privateKey = PrivateKeySpec(algorithm: "Ed25519") }.isAllowed)
    }

    @Test(arguments: denials)
    func deniesWithTheFieldPathAndWhatWouldBeAccepted(_ rule: RuleCase) {
        let judgement = judged(rule.change)
        #expect(!judgement.isAllowed)
        #expect(judgement.violations.map(\.description) == [rule.violation])
    }

    @Test func everyViolationIsListedOneALineInSpecOrder() {
        let judgement = judged { spec in
            spec.serviceName = "appp1"
            spec.dnsNames = ["ok.svc", "bad.example.com"]
            spec.duration = "forever"
            spec.usages = ["nope"]
        }
        #expect(judgement.message == """
            spec.serviceName: "appp1" is not in the allowed names [app1 app2 shared-cache] for namespace app1 (did you mean "app1"?)
            spec.dnsNames[1]: "bad.example.com" is not under an allowed suffix [.svc .svc.cluster.local]
            spec.duration: "forever" is not a duration; write hours, minutes or seconds such as 2160h, 90m or 1h30m
            spec.usages[0]: "nope" is not a known usage; use one of [server auth, client auth, digital signature, key encipherment]
            """)
    }

    @Test func namespacesWithoutNamesSaySo() {
        let judgement = judge(Pki(spec: PkiSpec(serviceName: "app1", dnsNames: ["a.svc"])), namespace: "other",
                              policy: Policy(namespaces: ["app1": ["app1"]]))
        #expect(judgement.message == "spec.serviceName: \"app1\" is not allowed: the policy allows no service names for namespace other")
    }

    @Test func fieldsOfTheWrongTypeAreViolationsToo() {
        var pki = Pki(spec: goodSpec())
        pki.problems = [FieldProblem(path: "spec.privateKey.size", message: "expected an integer, found a string")]
        #expect(judge(pki, namespace: "app1", policy: policy).message == "spec.privateKey.size: expected an integer, found a string")
    }

    @Test func warnsAboutWhatIsLegalButUnwise() {
        #expect(judged { $0.duration = "8760h"; $0.renewBefore = nil }.warnings == ["spec.duration: 8760h is longer than the recommended 2160h"])
        #expect(judged { $0.renewBefore = "24h" }.warnings == ["spec.renewBefore: 24h is under a tenth of spec.duration 2160h; a failed renewal leaves little time"])
        #expect(judged { $0.renewBefore = "1500h" }.warnings == ["spec.renewBefore: 1500h is over half of spec.duration 2160h; the certificate is renewed very often"])
        #expect(judged { $0.commonName = "app1" }.warnings == ["spec.commonName: \"app1\" is not among spec.dnsNames; clients check dnsNames, not the common name"])
        #expect(judged { $0.privateKey = PrivateKeySpec(algorithm: "RSA", size: 3072) }.warnings
                == ["spec.privateKey: RSA 3072 is slower and larger than ECDSA 256, which current TLS clients all accept"])
        let typo = judged { $0.serviceName = "appp1"; $0.dnsNames = ["appp1.app1.svc"]; $0.duration = "8760h"; $0.renewBefore = nil }
        #expect(typo.warnings == ["spec.duration: 8760h is longer than the recommended 2160h"], "as recorded from kubectl")
    }

    @Test func updatesThatMoveTheSecretOrIssuerAreWarned() {
        let before = Pki(metadata: ObjectMeta(name: "app1-pki"), spec: goodSpec())
        var after = before
        after.spec.secretName = "app1-tls-v2"
        after.spec.issuer = "internal"
        let judgement = judge(after, namespace: "app1", policy: policy, previous: before)
        #expect(judgement.isAllowed)
        #expect(judgement.warnings == [
            "spec.secretName: changed from \"app1-pki\" to \"app1-tls-v2\"; the old Secret is left as it is",
            "spec.issuer: changed from \"default\" to \"internal\"; the certificate is re-issued by the new CA",
        ])
    }

    @Test func warningsStayWithinWhatKubectlAndTheAPIServerShow() {
        let long = String(repeating: "x", count: 300) + ".svc"
        let judgement = judged { $0.commonName = long; $0.dnsNames = ["a.svc"] }
        #expect(judgement.warnings.allSatisfy { $0.count <= 120 && !$0.hasPrefix("Warning") })
        #expect(judgement.warnings.first?.hasSuffix("...") == true)
    }
}

@Suite struct NameTests {
    @Test(arguments: [("App1.APP1.Svc", ".app1.svc", true), ("x.app1.svc", "APP1.SVC", true), ("app1.svc", ".app1.svc", false),
                      ("x.app2.svc", ".app1.svc", false), ("x.app1.svc", "", true), ("x.app1.svcx", ".app1.svc", false)])
    func dnsSuffixesMatchWithoutCase(_ name: String, _ suffix: String, _ expected: Bool) {
        #expect(hasSuffixIgnoringASCIICase(name, suffix) == expected)
    }

    @Test func goDurations() {
        #expect(parseGoDuration("2160h") == 7_776_000.0)
        #expect(parseGoDuration("1h30m") == 5400)
        #expect(parseGoDuration("90m") == 5400)
        #expect(parseGoDuration("1.5h") == 5400)
        #expect(parseGoDuration("500ms") == 0.5)
        #expect(parseGoDuration("90 days") == nil)
        #expect(parseGoDuration("h") == nil)
        #expect(parseGoDuration("") == nil)
        #expect(formatDuration(5400) == "1h30m")
        #expect(formatDuration(2160 * 3600) == "2160h")
        // Go's limit, int64 nanoseconds: 2562047h47m16.854775807s.
        #expect(parseGoDuration("2562047h") == 2_562_047.0 * 3600)
        #expect(parseGoDuration("2562048h") == nil)
        #expect(parseGoDuration("99999999999999999999999h") == nil)
        #expect(parseGoDuration("1" + String(repeating: "0", count: 400) + "h") == nil)
        #expect(formatDuration(.infinity) == "infs")
        // Whole numbers of up to 15 digits are summed as integers, longer ones parsed as Double.
        #expect(parseGoDuration("123456789012345ns") == 123_456_789_012_345 * 1e-9)
        #expect(parseGoDuration("1234567890123456ns") == 1_234_567_890_123_456 * 1e-9)
        #expect(parseGoDuration("007h") == 25_200.0)
        #expect(parseGoDuration("1h.5m") == 3630)
    }

    /// The one-pass check that passes ordinary names must never pass one the label-by-label
    /// check words a problem for: every name of up to 5 characters from a small alphabet.
    @Test func theFastDNSNameCheckPassesOnlyValidNames() {
        let alphabet: [UInt8] = Array("a0Z-.*_".utf8) + [0xC3]
        var names: [[UInt8]] = [[]]
        var checked = 0
        for _ in 1...5 {
            names = names.flatMap { name in alphabet.map { name + [$0] } }
            for name in names {
                name.withUnsafeBufferPointer { bytes in
                    if isPlainHostName(bytes) {
                        #expect(hostNameProblem(bytes) == nil, "\(String(decoding: bytes, as: UTF8.self))")
                        checked += 1
                    }
                }
            }
        }
        #expect(checked > 1_000)
        let long = Array(repeating: String(repeating: "a", count: 63), count: 3).joined(separator: ".") + "." + String(repeating: "b", count: 61)
        #expect(dnsNameProblem(long) == nil && dnsNameProblem(long + "a") != nil)
        #expect(dnsNameProblem(String(repeating: "a", count: 63) + ".svc") == nil)
        #expect(dnsNameProblem(String(repeating: "a", count: 64) + ".svc") != nil)
        #expect(dnsNameProblem("-a.svc") != nil && dnsNameProblem("a-.svc") != nil && dnsNameProblem("a-b.svc") == nil)
    }

    @Test func didYouMeanStaysClose() {
        #expect(closestMatch(to: "appp1", among: ["app1", "app2"]) == "app1")
        #expect(closestMatch(to: "ap2", among: ["app1", "app2"]) == "app2")
        #expect(closestMatch(to: "billing", among: ["app1", "app2"]) == nil)
        #expect(closestMatch(to: "a", among: ["b"]) == "b")
        // Case is ignored, by ASCII fast path or by Unicode case mapping.
        #expect(closestMatch(to: "APPP1", among: ["app1", "app2"]) == "app1")
        #expect(closestMatch(to: "app1", among: ["APP2", "billing"]) == "APP2")
        #expect(closestMatch(to: "ÄPP1", among: ["äpp2"]) == "äpp2")
        // The limit counts characters: "éé" is two, so one edit is allowed and two are not.
        #expect(closestMatch(to: "éé", among: ["ée"]) == "ée")
        #expect(closestMatch(to: "éé", among: ["ee"]) == nil)
        #expect(bracketed([]) == "[]" && bracketed(["app1"]) == "[app1]" && bracketed(["a", "b c"]) == "[a b c]")
        #expect(editDistance("kitten", "sitting") == 3)
        #expect(editDistance("sitting", "kitten") == 3)
        #expect(editDistance("", "abc") == 3 && editDistance("abc", "") == 3 && editDistance("abc", "abc") == 0)
        // By Unicode scalar, not by byte: é is one edit from e, though two bytes.
        #expect(editDistance("café", "cafe") == 1)
        #expect(editDistance("straße", "strasse") == 2)
    }

    @Test func ipRanges() {
        let v4 = IPRange("10.0.0.0/8")!
        #expect(v4.contains(parseIPAddress("10.255.0.1")!))
        #expect(!v4.contains(parseIPAddress("11.0.0.1")!))
        #expect(!v4.contains(parseIPAddress("fd00::1")!))
        #expect(IPRange("192.168.1.0/23")!.contains(parseIPAddress("192.168.0.7")!))
        #expect(IPRange("fd00::/8")!.description == "fd00::/8")
        #expect(IPRange("10.0.0.0/33") == nil)
        #expect(IPRange("10.0.0.0") == nil)
    }

    @Test func policyProblemsAreNamed() {
        var broken = Policy()
        broken.minimumDuration = 10 * 86400
        broken.maximumDuration = 86400
        broken.defaultIssuer = "nope"
        broken.dnsSuffixes = ["svc"]
        #expect(broken.problems() == [
            "duration.minimum 240h is longer than duration.maximum 24h",
            "duration.default 2160h is outside [240h, 24h]",
            "defaultIssuer \"nope\" is not among issuers [default]",
            "dnsSuffixes: \"svc\" must start with a dot (\".svc\")",
        ])
        #expect(Policy().problems().isEmpty)
    }
}
