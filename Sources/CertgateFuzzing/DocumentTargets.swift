import CertgateCrypto
import CertgateHTTP
import CertgateJSON
import CertgateKube
import CertgateManifests
import CertgatePKI
import CertgateWebhook

// MARK: JSON

/// Walks every value the way the decoders do (integers first, then as a double), and
/// checks that every string survives being written and read back.
func fuzzJSON(_ bytes: [UInt8]) {
    _ = try? JSONReader.read(bytes) { reader in try walk(&reader) }
}

private func walk(_ reader: inout JSONReader) throws {
    switch try reader.peek() {
    case .object:
        try reader.readObject { reader, key in
            checkRoundTrip(key.description)
            try walk(&reader)
        }
    case .array:
        try reader.readArray { reader, _ in try walk(&reader) }
    case .string:
        checkRoundTrip(try reader.readString())
    case .number:
        let start = reader.offset
        do { _ = try reader.readInt() } catch let error as JSONError where error.offset == start {
            _ = try reader.readDouble()
        }
    case .bool:
        _ = try reader.readBool()
    case .null:
        // peek judges by the first byte: "nul" or "nope" is not null, and must not be taken for it.
        guard try reader.readNull() else { throw JSONError(offset: reader.offset, "not null") }
    }
}

private func checkRoundTrip(_ value: String) {
    var writer = JSONWriter()
    writer.string(value)
    let back = try? JSONReader.read(writer.bytes) { reader in try reader.readString() }
    fuzzCheck(back == value, "a string does not survive JSONWriter and JSONReader: \(Array(value.utf8))")
}

// MARK: Admission

private let examplePolicy = try! PolicyFile.parse(PolicyFile.builtInDefault)

/// POST /validate as the server runs it. Whatever the body, the answer is a 400 with a
/// reason, or a 200 AdmissionReview that is well-formed JSON, carries the request's uid,
/// and keeps kubectl's limits on warnings.
func fuzzAdmission(_ bytes: [UInt8]) {
    let webhook = AdmissionWebhook(policy: { examplePolicy })
    let answer = webhook.handle(HTTPRequest(method: "POST", path: "/validate", query: "timeout=10s",
                                            headers: ["content-type": "application/json"], body: bytes, version: .http1_1))
    let review = try? AdmissionReview(json: bytes)
    guard let review else {
        fuzzCheck(answer.status == 400, "an undecodable review answered \(answer.status)")
        return
    }
    fuzzCheck(answer.status == 200, "a decodable review answered \(answer.status)")
    var uid: String?
    var warnings: [String] = []
    var allowed: Bool?
    do {
        try JSONReader.read(answer.body) { reader in
            try reader.readObject { reader, key in
                guard key == "response" else { return try reader.skipValue() }
                try reader.readObject { reader, key in
                    if key == "uid" { uid = try reader.readString() }
                    else if key == "allowed" { allowed = try reader.readBool() }
                    else if key == "warnings" { warnings = try reader.readStringArray() ?? [] }
                    else { try reader.skipValue() }
                }
            }
        }
    } catch {
        fuzzCheck(false, "the answer is not well-formed JSON: \(error)")
    }
    fuzzCheck(uid == review.request.uid, "the answer's uid \(uid ?? "none") is not the request's \(review.request.uid)")
    fuzzCheck(allowed != nil, "the answer says neither allowed nor denied")
    for warning in warnings {
        fuzzCheck(warning.count <= Judgement.maxWarningLength, "a warning of \(warning.count) characters: \(warning)")
    }
    fuzzCheck(warnings.reduce(0) { $0 + $1.utf8.count } <= Judgement.maxWarningsLength, "warnings past 4 KiB in all")
}

// MARK: Policy

/// A policy file, then a few Pkis judged under it (its durations, ranges and names in use).
func fuzzPolicy(_ bytes: [UInt8]) {
    guard let policy = try? PolicyFile.parse(String(decoding: bytes, as: UTF8.self)) else { return }
    _ = policy.problems()
    var pki = Pki(metadata: ObjectMeta(name: "app1-pki", namespace: "app1"))
    pki.spec.serviceName = "app1"
    pki.spec.dnsNames = ["app1.app1.svc"]
    pki.spec.ipAddresses = ["10.0.0.1", "fd00::1"]
    _ = judge(pki, namespace: "app1", policy: policy)
    pki.spec.duration = "2160h"
    pki.spec.renewBefore = "720h"
    pki.spec.issuer = "default"
    pki.spec.privateKey = PrivateKeySpec(algorithm: "RSA", size: 2048)
    _ = judge(pki, namespace: "app1", policy: policy, previous: pki)
}

// MARK: Kubeconfig

/// A kubeconfig's text; relative files are looked for in a directory that does not exist.
func fuzzKubeconfig(_ bytes: [UInt8]) {
    _ = try? ClusterConfigurationLoader.kubeconfig(text: String(decoding: bytes, as: UTF8.self),
                                                    path: "/nonexistent-certgate-fuzz/kubeconfig")
}

// MARK: Kubernetes wire

/// The first byte picks what the body is read as, as the client reads API server answers.
func fuzzKubeWire(_ bytes: [UInt8]) {
    guard let selector = bytes.first else { return }
    let body = Array(bytes.dropFirst())
    switch selector % 6 {
    case 0: _ = try? JSONCoding.decode(ObjectList<Pki>.self, from: body)
    case 1: _ = try? JSONCoding.decode(ObjectList<PartialObjectMetadata>.self, from: body)
    case 2: _ = try? JSONCoding.decode(ObjectList<Secret>.self, from: body)
    case 3: _ = try? JSONCoding.decode(APIStatus.self, from: body)
    case 4: _ = try? JSONCoding.decode(Lease.self, from: body)
    default:
        // A watch stream, arriving in pieces; cutting it elsewhere must not change the events.
        let whole = watchEvents([body[...]])
        let cut = watchEvents(pieces(of: body[...], seed: selector))
        fuzzCheck(whole == cut, "the watch events depend on how the stream was cut")
    }
}

private func watchEvents(_ pieces: [ArraySlice<UInt8>]) -> [String] {
    var stream = WatchStreamDecoder<Pki>()
    var events: [String] = []
    do {
        for piece in pieces {
            _ = try stream.append(Array(piece)) { event in
                switch event {
                case .added(let object): events.append("added \(object.metadata.name ?? "")")
                case .modified(let object): events.append("modified \(object.metadata.name ?? "")")
                case .deleted(let object): events.append("deleted \(object.metadata.name ?? "")")
                case .bookmark(let version): events.append("bookmark \(version)")
                case .error(let status): events.append("error \(status.code)")
                }
                return true
            }
        }
    } catch {
        events.append("failed")
    }
    return events
}

// MARK: PEM

/// Certificates and keys as the serving certificate, the kubeconfig and the CA Secrets give them.
func fuzzPEM(_ bytes: [UInt8]) {
    let chain = (try? Certificate.chain(pem: bytes)) ?? []
    let key = try? PrivateKey(pem: bytes)
    for certificate in chain {
        _ = certificate.serialNumberHex
        _ = certificate.notAfter
        _ = certificate.notBefore
        _ = certificate.commonName
        _ = try? certificate.pem()
        if let key { _ = certificate.matches(key) }
        if let first = chain.first { _ = certificate.isSigned(by: first) }
    }
    if let key {
        _ = key.algorithm
        _ = try? key.pkcs8PEM()
    }
}
