import CertgateJSON

/// The Pki custom resource (certgate.dev/v1): what an application owner asks for, and what
/// the reconciler reports back in its status. One model for the webhook, `validate` and the
/// reconciler, read by one decoder (``init(reading:wholeMetadata:)``).
///
/// Every spec field is kept as written (durations as text, sizes as numbers) so that the
/// rules can say exactly what was wrong with it; nothing is defaulted here.
public struct Pki: Sendable, Equatable {
    public static let group = "certgate.dev"
    public static let version = "v1"
    public static let kind = "Pki"
    public static let resource = "pkis"
    static let commonAPIVersions = ["certgate.dev/v1"]
    static let commonKinds = [kind]

    public var apiVersion: String? {
        _read { yield storage.apiVersion }
        _modify { makeUnique(); yield &storage.apiVersion }
    }
    public var kind: String? {
        _read { yield storage.kind }
        _modify { makeUnique(); yield &storage.kind }
    }
    public var metadata: ObjectMeta {
        _read { yield storage.metadata }
        _modify { makeUnique(); yield &storage.metadata }
    }
    public var spec: PkiSpec {
        _read { yield storage.spec }
        _modify { makeUnique(); yield &storage.spec }
    }
    /// What the reconciler last reported; admission does not read it.
    public var status: Status? {
        _read { yield storage.status }
        _modify { makeUnique(); yield &storage.status }
    }
    /// Fields whose JSON type was wrong ("spec.privateKey.size: expected a number, found a string").
    public var problems: [FieldProblem] {
        _read { yield storage.problems }
        _modify { makeUnique(); yield &storage.problems }
    }

    public init(apiVersion: String? = "certgate.dev/v1", kind: String? = "Pki", metadata: ObjectMeta = ObjectMeta(),
                spec: PkiSpec = PkiSpec(), status: Status? = nil, problems: [FieldProblem] = []) {
        storage = Storage(apiVersion: apiVersion, kind: kind, metadata: metadata, spec: spec, status: status, problems: problems)
    }

    /// The fields behind one reference, copied on write as Array's elements are: an
    /// AdmissionReview carries two Pkis (400 bytes each inline), and moving the request
    /// through decoding copied them a dozen times per review.
    private var storage: Storage

    private final class Storage: @unchecked Sendable {
        // Mutated only through Pki's accessors, after makeUnique: shared storage is never
        // written, so accesses cannot overlap and need no run-time exclusivity check (which
        // cost more than the field reads it guarded).
        @exclusivity(unchecked) var apiVersion: String?
        @exclusivity(unchecked) var kind: String?
        @exclusivity(unchecked) var metadata: ObjectMeta
        @exclusivity(unchecked) var spec: PkiSpec
        @exclusivity(unchecked) var status: Status?
        @exclusivity(unchecked) var problems: [FieldProblem]

        init(apiVersion: String?, kind: String?, metadata: ObjectMeta, spec: PkiSpec, status: Status?, problems: [FieldProblem]) {
            self.apiVersion = apiVersion
            self.kind = kind
            self.metadata = metadata
            self.spec = spec
            self.status = status
            self.problems = problems
        }
    }

    private mutating func makeUnique() {
        guard !isKnownUniquelyReferenced(&storage) else { return }
        storage = Storage(apiVersion: storage.apiVersion, kind: storage.kind, metadata: storage.metadata, spec: storage.spec,
                          status: storage.status, problems: storage.problems)
    }

    public static func == (lhs: Pki, rhs: Pki) -> Bool {
        lhs.storage === rhs.storage
            || (lhs.apiVersion == rhs.apiVersion && lhs.kind == rhs.kind && lhs.metadata == rhs.metadata && lhs.spec == rhs.spec
                && lhs.status == rhs.status && lhs.problems == rhs.problems)
    }
}

/// `spec` of a Pki, as written.
public struct PkiSpec: Sendable, Equatable, Encodable {
    public var serviceName: String?
    public var secretName: String?
    public var commonName: String?
    public var dnsNames: [String]?
    public var ipAddresses: [String]?
    /// URI SANs, such as a workload's SPIFFE ID.
    public var uris: [String]?
    public var emailAddresses: [String]?
    /// Distinguished-name attributes besides commonName.
    public var subject: SubjectSpec?
    public var duration: String?
    public var renewBefore: String?
    public var privateKey: PrivateKeySpec?
    public var usages: [String]?
    public var issuer: String?
    public var rotationPolicy: String?
    /// Labels and annotations copied onto the Secret.
    public var secretTemplate: SecretTemplate?
    /// More forms of the key and certificates in the Secret.
    public var keystores: KeystoresSpec?

    public init(serviceName: String? = nil, secretName: String? = nil, commonName: String? = nil, dnsNames: [String]? = nil,
                ipAddresses: [String]? = nil, duration: String? = nil, renewBefore: String? = nil,
                privateKey: PrivateKeySpec? = nil, usages: [String]? = nil, issuer: String? = nil, rotationPolicy: String? = nil,
                secretTemplate: SecretTemplate? = nil, keystores: KeystoresSpec? = nil, uris: [String]? = nil,
                emailAddresses: [String]? = nil, subject: SubjectSpec? = nil) {
        self.serviceName = serviceName
        self.secretName = secretName
        self.commonName = commonName
        self.dnsNames = dnsNames
        self.ipAddresses = ipAddresses
        self.duration = duration
        self.renewBefore = renewBefore
        self.privateKey = privateKey
        self.usages = usages
        self.issuer = issuer
        self.rotationPolicy = rotationPolicy
        self.secretTemplate = secretTemplate
        self.keystores = keystores
        self.uris = uris
        self.emailAddresses = emailAddresses
        self.subject = subject
    }
}

/// `spec.subject`: the certificate subject's attributes besides its common name.
public struct SubjectSpec: Sendable, Equatable, Encodable {
    public var organizations: [String]?
    public var organizationalUnits: [String]?
    public var countries: [String]?
    public var localities: [String]?
    public var provinces: [String]?

    public init(organizations: [String]? = nil, organizationalUnits: [String]? = nil, countries: [String]? = nil,
                localities: [String]? = nil, provinces: [String]? = nil) {
        self.organizations = organizations
        self.organizationalUnits = organizationalUnits
        self.countries = countries
        self.localities = localities
        self.provinces = provinces
    }
}

/// `spec.keystores`: the key and certificates in the forms other runtimes read.
public struct KeystoresSpec: Sendable, Equatable, Encodable {
    /// keystore.p12 (key, leaf and chain) and truststore.p12 (the CA), for Java and .NET.
    public var pkcs12: PKCS12Spec?
    /// tls-combined.pem: the key, then the chain, for proxies that take one file.
    public var combinedPEM: EmptySpec?
    /// key.der: the key as PKCS#8 DER.
    public var der: EmptySpec?

    public init(pkcs12: PKCS12Spec? = nil, combinedPEM: EmptySpec? = nil, der: EmptySpec? = nil) {
        self.pkcs12 = pkcs12
        self.combinedPEM = combinedPEM
        self.der = der
    }

    public static let keystoreKey = "keystore.p12"
    public static let truststoreKey = "truststore.p12"
    public static let combinedPEMKey = "tls-combined.pem"
    public static let derKey = "key.der"
    /// `spec.keystores.pkcs12.profile` values, as cert-manager names them.
    public static let profiles = ["Modern2023", "LegacyRC2"]
}

/// `spec.keystores.pkcs12`.
public struct PKCS12Spec: Sendable, Equatable, Encodable {
    /// The Secret key (in the Pki's namespace) holding the keystore password.
    public var passwordSecretRef: SecretKeySelector?
    /// Modern2023 (AES-256-CBC, PBKDF2, SHA-256 MAC; the default) or LegacyRC2 (old Java only).
    public var profile: String?

    public init(passwordSecretRef: SecretKeySelector? = nil, profile: String? = nil) {
        self.passwordSecretRef = passwordSecretRef
        self.profile = profile
    }
}

/// A key of a Secret in the same namespace.
public struct SecretKeySelector: Sendable, Equatable, Encodable {
    public var name: String?
    public var key: String?

    public init(name: String? = nil, key: String? = nil) {
        self.name = name
        self.key = key
    }
}

/// An option that is on when written as `{}`.
public struct EmptySpec: Sendable, Equatable, Encodable {
    public init() {}
}

/// `spec.secretTemplate`: what tools that select Secrets by label, or read their
/// annotations (reflectors, backup tools), need on the Secret.
public struct SecretTemplate: Sendable, Equatable, Encodable {
    public var labels: [String: String]?
    public var annotations: [String: String]?

    public init(labels: [String: String]? = nil, annotations: [String: String]? = nil) {
        self.labels = labels
        self.annotations = annotations
    }

    /// What certgate writes itself and a template cannot change.
    public static let ownedLabels: Set<String> = ["certgate.dev/pki"]
    public static let ownedAnnotations: Set<String> = ["certgate.dev/renew", "certgate.dev/secret-template"]
    /// The API server's limit on all of an object's annotations together.
    public static let maximumAnnotationBytes = 256 * 1024
}

/// `spec.privateKey`.
public struct PrivateKeySpec: Sendable, Equatable, Encodable {
    public var algorithm: String?
    public var size: Int?

    public init(algorithm: String? = nil, size: Int? = nil) {
        self.algorithm = algorithm
        self.size = size
    }
}

/// A field whose value could not be read as the type the resource defines, or that breaks
/// a rule.
///
/// Kept as UTF-8: a denial's messages are built as bytes (``MessageText``) and written out
/// as bytes, and making Strings of them in between cost a denied review more than the rules.
public struct FieldProblem: Sendable, Equatable, CustomStringConvertible {
    /// `spec.dnsNames[2]`
    public let pathUTF8: [UInt8]
    public let messageUTF8: [UInt8]

    public init(path: String, message: String) {
        pathUTF8 = Array(path.utf8)
        messageUTF8 = Array(message.utf8)
    }

    init(path: MessageText, message: MessageText) {
        pathUTF8 = path.bytes
        messageUTF8 = message.bytes
    }

    public var path: String { String(decoding: pathUTF8, as: UTF8.self) }
    public var message: String { String(decoding: messageUTF8, as: UTF8.self) }

    public var description: String {
        var bytes: [UInt8] = []
        append(to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Appends "path: message", as ``description`` reads.
    func append(to bytes: inout [UInt8]) {
        bytes.append(contentsOf: pathUTF8)
        bytes.append(UInt8(ascii: ":"))
        bytes.append(UInt8(ascii: " "))
        bytes.append(contentsOf: messageUTF8)
    }

    /// The same rule broken by the same value, wherever in a list it stands: the path
    /// without its indices (an entry inserted before it moves it), and the message, which
    /// names the value.
    var ratchetKey: String {
        var key = ""
        var inIndex = false
        for character in path {
            if character == "[" { inIndex = true; key.append("[") }
            else if character == "]" { inIndex = false; key.append("]") }
            else if !inIndex { key.append(character) }
        }
        return key + "\u{0}" + message
    }
}

extension Pki {
    /// Reads a Pki object (as the API server sends it in an AdmissionReview, a list or a
    /// watch). Syntax errors throw; a field of the wrong type is recorded in ``problems`` and
    /// the rest is still read. Admission reads the spec and what identifies the object;
    /// `wholeMetadata` also reads the rest of metadata and the status, for the reconciler.
    public init(reading reader: inout JSONReader, wholeMetadata: Bool = false) throws {
        // Filled in a local the closures capture, then moved (taken) into self, so that self
        // holds the only reference to the storage and a later write copies nothing.
        var pki: Pki? = Pki(apiVersion: nil, kind: nil)
        let fields = FieldReader()
        try reader.readObject { reader, key in
            if key == "apiVersion" { pki!.apiVersion = try fields.string(&reader, "apiVersion", usuallyOneOf: Pki.commonAPIVersions) }
            else if key == "kind" { pki!.kind = try fields.string(&reader, "kind", usuallyOneOf: Pki.commonKinds) }
            else if key == "metadata" {
                try fields.object(&reader, "metadata") { reader, key in try pki!.metadata.read(&reader, key, fields, whole: wholeMetadata) }
            }
            else if key == "spec" { try fields.object(&reader, "spec") { reader, key in try pki!.spec.read(&reader, key, fields) } }
            else if key == "status" && wholeMetadata { pki!.status = try fields.decoded(Status.self, &reader, "status") }
            else { try reader.skipValue() }
        }
        pki!.problems = fields.problems
        self = pki.take()!
    }
}

extension ObjectMeta {
    /// One member of metadata. Admission reads only what identifies the object; `whole`
    /// reads every field (the reconciler's annotations, labels and owners), the rarely
    /// present ones through their Codable form.
    mutating func read(_ reader: inout JSONReader, _ key: JSONKey, _ fields: FieldReader, whole: Bool) throws {
        if key == "name" { name = try fields.string(&reader, "metadata.name") }
        else if key == "namespace" { namespace = try fields.string(&reader, "metadata.namespace") }
        else if key == "uid" { uid = try fields.string(&reader, "metadata.uid") }
        else if key == "generation" { generation = try fields.int(&reader, "metadata.generation").map(Int64.init) }
        else if key == "resourceVersion" { resourceVersion = try fields.string(&reader, "metadata.resourceVersion") }
        else if !whole { try reader.skipValue() }
        else if key == "generateName" { generateName = try fields.string(&reader, "metadata.generateName") }
        else if key == "creationTimestamp" { creationTimestamp = try fields.string(&reader, "metadata.creationTimestamp") }
        else if key == "deletionTimestamp" { deletionTimestamp = try fields.string(&reader, "metadata.deletionTimestamp") }
        else if key == "labels" { labels = try fields.stringMap(&reader, "metadata.labels") }
        else if key == "annotations" { annotations = try fields.stringMap(&reader, "metadata.annotations") }
        else if key == "ownerReferences" { ownerReferences = try fields.decoded([OwnerReference].self, &reader, "metadata.ownerReferences") }
        else { try reader.skipValue() }
    }
}

extension PkiSpec {
    mutating func read(_ reader: inout JSONReader, _ key: JSONKey, _ fields: FieldReader) throws {
        if key == "serviceName" { serviceName = try fields.string(&reader, "spec.serviceName") }
        else if key == "secretName" { secretName = try fields.string(&reader, "spec.secretName") }
        else if key == "commonName" { commonName = try fields.string(&reader, "spec.commonName") }
        else if key == "dnsNames" { dnsNames = try fields.strings(&reader, "spec.dnsNames") }
        else if key == "ipAddresses" { ipAddresses = try fields.strings(&reader, "spec.ipAddresses") }
        else if key == "uris" { uris = try fields.strings(&reader, "spec.uris") }
        else if key == "emailAddresses" { emailAddresses = try fields.strings(&reader, "spec.emailAddresses") }
        else if key == "subject" {
            var subject = SubjectSpec()
            let present = try reader.peek() == .object
            try fields.object(&reader, "spec.subject") { reader, name in
                if name == "organizations" { subject.organizations = try fields.strings(&reader, "spec.subject.organizations") }
                else if name == "organizationalUnits" { subject.organizationalUnits = try fields.strings(&reader, "spec.subject.organizationalUnits") }
                else if name == "countries" { subject.countries = try fields.strings(&reader, "spec.subject.countries") }
                else if name == "localities" { subject.localities = try fields.strings(&reader, "spec.subject.localities") }
                else if name == "provinces" { subject.provinces = try fields.strings(&reader, "spec.subject.provinces") }
                else { try reader.skipValue() }
            }
            if present { self.subject = subject }
        }
        else if key == "duration" { duration = try fields.string(&reader, "spec.duration") }
        else if key == "renewBefore" { renewBefore = try fields.string(&reader, "spec.renewBefore") }
        else if key == "usages" { usages = try fields.strings(&reader, "spec.usages", usuallyOneOf: knownUsages) }
        else if key == "issuer" { issuer = try fields.string(&reader, "spec.issuer") }
        else if key == "rotationPolicy" { rotationPolicy = try fields.string(&reader, "spec.rotationPolicy") }
        else if key == "secretTemplate" {
            var template = SecretTemplate()
            var present = false
            try fields.object(&reader, "spec.secretTemplate") { reader, name in
                present = true
                if name == "labels" { template.labels = try fields.stringMap(&reader, "spec.secretTemplate.labels") }
                else if name == "annotations" { template.annotations = try fields.stringMap(&reader, "spec.secretTemplate.annotations") }
                else { try reader.skipValue() }
            }
            if present { secretTemplate = template }
        } else if key == "keystores" {
            var keystores = KeystoresSpec()
            var present = false
            try fields.object(&reader, "spec.keystores") { reader, name in
                present = true
                if name == "combinedPEM" { if try fields.presentObject(&reader, "spec.keystores.combinedPEM") { keystores.combinedPEM = EmptySpec() } }
                else if name == "der" { if try fields.presentObject(&reader, "spec.keystores.der") { keystores.der = EmptySpec() } }
                else if name == "pkcs12" {
                    var pkcs12 = PKCS12Spec()
                    let given = try reader.peek() == .object  // `pkcs12: {}` asks for one, and is judged for what it lacks
                    try fields.object(&reader, "spec.keystores.pkcs12") { reader, name in
                        if name == "profile" { pkcs12.profile = try fields.string(&reader, "spec.keystores.pkcs12.profile") }
                        else if name == "passwordSecretRef" {
                            var selector = SecretKeySelector()
                            try fields.object(&reader, "spec.keystores.pkcs12.passwordSecretRef") { reader, name in
                                if name == "name" { selector.name = try fields.string(&reader, "spec.keystores.pkcs12.passwordSecretRef.name") }
                                else if name == "key" { selector.key = try fields.string(&reader, "spec.keystores.pkcs12.passwordSecretRef.key") }
                                else { try reader.skipValue() }
                            }
                            pkcs12.passwordSecretRef = selector
                        } else { try reader.skipValue() }
                    }
                    if given { keystores.pkcs12 = pkcs12 }
                } else { try reader.skipValue() }
            }
            if present { self.keystores = keystores }
        }
        else if key == "privateKey" {
            var key = PrivateKeySpec()
            var present = false
            try fields.object(&reader, "spec.privateKey") { reader, name in
                present = true
                if name == "algorithm" { key.algorithm = try fields.string(&reader, "spec.privateKey.algorithm", usuallyOneOf: Policy.knownKeyAlgorithms) }
                else if name == "size" { key.size = try fields.int(&reader, "spec.privateKey.size") }
                else { try reader.skipValue() }
            }
            if present { privateKey = key }
        } else { try reader.skipValue() }
    }
}

/// Reads typed fields, turning a value of the wrong JSON type into a ``FieldProblem``.
/// A class, because nested object readers all add to the same list.
final class FieldReader {
    var problems: [FieldProblem] = []

    /// `path` is made only for a problem: list elements and map values are read far more
    /// often than they are wrong.
    func string(_ reader: inout JSONReader, _ path: @autoclosure () -> String, usuallyOneOf common: [String] = []) throws -> String? {
        switch try reader.peek() {
        case .string: return try reader.readString(usuallyOneOf: common)
        case .null: _ = try reader.readNull(); return nil
        case let other: try mismatch(&reader, path(), "a string", other); return nil
        }
    }

    func int(_ reader: inout JSONReader, _ path: String) throws -> Int? {
        switch try reader.peek() {
        case .number:
            let start = reader.offset
            do { return try reader.readInt() } catch let error as JSONError where error.offset == start {
                // A fraction or an out-of-range number: say so and read past it.
                _ = try reader.readDouble()
                problems.append(FieldProblem(path: path, message: "expected an integer"))
                return nil
            }
        case .null: _ = try reader.readNull(); return nil
        case let other: try mismatch(&reader, path, "an integer", other); return nil
        }
    }

    func strings(_ reader: inout JSONReader, _ path: String, usuallyOneOf common: [String] = []) throws -> [String]? {
        switch try reader.peek() {
        case .array:
            var values: [String] = []
            try reader.readArray { reader, index in
                if let value = try string(&reader, "\(path)[\(index)]", usuallyOneOf: common) { values.append(value) }
            }
            return values
        case .null: _ = try reader.readNull(); return nil
        case let other: try mismatch(&reader, path, "a list of strings", other); return nil
        }
    }

    /// An object of strings (labels, annotations); a value of another type is a problem at
    /// its own key's path.
    func stringMap(_ reader: inout JSONReader, _ path: String) throws -> [String: String]? {
        guard try reader.peek() == .object else {
            try object(&reader, path) { reader, _ in try reader.skipValue() }
            return nil
        }
        var values: [String: String] = [:]
        try reader.readObject { reader, key in
            // Kubernetes writes a map key in brackets, unquoted: metadata.labels[app.kubernetes.io/name].
            let name = key.description
            if let value = try string(&reader, "\(path)[\(name)]") { values[name] = value }
        }
        return values
    }

    /// An object whose presence is the setting (`combinedPEM: {}`); its members are ignored.
    func presentObject(_ reader: inout JSONReader, _ path: String) throws -> Bool {
        guard try reader.peek() == .object else {
            try object(&reader, path) { reader, _ in try reader.skipValue() }
            return false
        }
        try reader.skipValue()
        return true
    }

    /// A value whose Codable form decodes it (a Pki's status, its owners); one that does not
    /// decode is a problem at `path`.
    func decoded<T: Decodable>(_ type: T.Type, _ reader: inout JSONReader, _ path: String) throws -> T? {
        let value = try JSONValue(reading: &reader)
        if value == .null { return nil }
        do {
            return try JSONCoding.decode(type, from: value)
        } catch {
            problems.append(FieldProblem(path: path, message: "\(error)"))
            return nil
        }
    }

    func object(_ reader: inout JSONReader, _ path: String, _ member: (inout JSONReader, JSONKey) throws -> Void) throws {
        switch try reader.peek() {
        case .object: try reader.readObject(member)
        case .null: _ = try reader.readNull()
        case let other: try mismatch(&reader, path, "an object", other)
        }
    }

    private func mismatch(_ reader: inout JSONReader, _ path: String, _ expected: String, _ found: JSONReader.Kind) throws {
        problems.append(FieldProblem(path: path, message: "expected \(expected), found \(describe(found))"))
        try reader.skipValue()
    }

    private func describe(_ kind: JSONReader.Kind) -> String {
        switch kind {
        case .object: "an object"
        case .array: "a list"
        case .string: "a string"
        case .number: "a number"
        case .bool: "true or false"
        case .null: "null"
        }
    }
}
