import CertgateKube
import CertgateLocking
import CertgatePKI

/// A leadership term's view of the cluster, fed by watches: a reconcile of an up-to-date Pki
/// reads everything here and sends no request.
///
/// The Secrets certgate manages (labelled ``PkiReconciler/pkiLabel``) are cached with their
/// data; every other Secret by its metadata only, as cert-manager splits them, so that a
/// cluster's Helm releases and tokens never sit in certgate's memory. The data of the few
/// unlabelled Secrets a reconcile reads (issuer CAs, keystore passwords, a Secret from before
/// the label) is fetched once per resourceVersion.
public final class TermCaches: ClusterReads {
    let pkis: Informer<Pki>
    let managedSecrets: Informer<Secret>
    let otherSecrets: Informer<PartialObjectMetadata>
    let pods: Informer<Pod>
    private let client: KubeClient
    /// Unlabelled Secrets read with their data, valid while the metadata cache holds the same resourceVersion.
    private let fetched = Locked<[String: Secret]>([:])

    /// The label selectors that split Secrets between the two caches.
    static let managedSelector = PkiReconciler.pkiLabel
    static let otherSelector = "!" + PkiReconciler.pkiLabel

    init(client: KubeClient, resyncInterval: Double, failures: FailureReporter?, pkiHandlers: InformerHandlers<Pki>,
         managedSecretHandlers: InformerHandlers<Secret>, otherSecretHandlers: InformerHandlers<PartialObjectMetadata>) {
        self.client = client
        pkis = Informer(client: client, resource: .pkis, namespace: nil, resyncInterval: resyncInterval, failures: failures,
                        transform: TermCaches.withoutLastApplied, handlers: pkiHandlers)
        managedSecrets = Informer(client: client, resource: .secrets, namespace: nil, options: ListOptions(labelSelector: TermCaches.managedSelector),
                                  resyncInterval: resyncInterval, failures: failures, handlers: managedSecretHandlers)
        otherSecrets = Informer(client: client, resource: .secrets, namespace: nil, options: ListOptions(labelSelector: TermCaches.otherSelector),
                                resyncInterval: resyncInterval, failures: failures, handlers: otherSecretHandlers)
        pods = Informer(client: client, resource: .pods, namespace: nil, resyncInterval: resyncInterval, failures: failures,
                        indexKeys: { pod in pod.secretNames.map { TermCaches.podIndexKey(pod.metadata.namespace ?? "", $0) } },
                        handlers: InformerHandlers())
    }

    /// kubectl apply (and GitOps tools applying client-side) keep the whole object again, as
    /// JSON, in an annotation the reconciler never reads: not worth a copy per cached Pki.
    static let lastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"

    @Sendable static func withoutLastApplied(_ pki: Pki) -> Pki {
        guard pki.metadata.annotations?[lastAppliedAnnotation] != nil else { return pki }
        var slim = pki
        slim.metadata.annotations?[lastAppliedAnnotation] = nil
        if slim.metadata.annotations?.isEmpty == true { slim.metadata.annotations = nil }
        return slim
    }

    private static func podIndexKey(_ namespace: String, _ secretName: String) -> String { "\(namespace)/\(secretName)" }

    func start() throws {
        try pods.start()
        try pkis.start()
        try managedSecrets.start()
        try otherSecrets.start()
    }

    func stop() {
        pkis.stop()
        managedSecrets.stop()
        otherSecrets.stop()
        pods.stop()
    }

    var hasSynced: Bool { pkis.hasSynced && managedSecrets.hasSynced && otherSecrets.hasSynced && pods.hasSynced }

    public func pki(namespace: String, name: String) throws -> Pki? {
        pkis.get(namespace: namespace, name: name)
    }

    public func secret(namespace: String, name: String) throws -> Secret? {
        if let managed = managedSecrets.get(namespace: namespace, name: name) { return managed }
        guard let metadata = otherSecrets.get(namespace: namespace, name: name)?.metadata else { return nil }
        let key = "\(namespace)/\(name)"
        // Fetched under the lock: the workers that meet a changed CA Secret together send one GET.
        return try fetched.withLock { fetched in
            if let known = fetched[key], known.metadata.resourceVersion == metadata.resourceVersion { return known }
            let secret: Secret? = try client.getIfPresent(.secrets, namespace: namespace, name: name)
            fetched[key] = secret
            return secret
        }
    }

    public func pods(namespace: String, usingSecret secretName: String) throws -> [Pod] {
        pods.objects(indexedBy: TermCaches.podIndexKey(namespace, secretName))
    }

    public func wrote(_ pki: Pki) { pkis.assume(pki) }

    public func wrote(_ secret: Secret) {
        if secret.metadata.labels?[PkiReconciler.pkiLabel] != nil {
            managedSecrets.assume(secret)
            otherSecrets.assumeDeleted(namespace: secret.metadata.namespace, name: secret.metadata.name ?? "")
        } else {
            otherSecrets.assume(PartialObjectMetadata(metadata: secret.metadata))
            fetched.withLock { $0["\(secret.metadata.namespace ?? "")/\(secret.metadata.name ?? "")"] = secret }
        }
    }

    /// The keys of every cached Pki.
    var pkiKeys: [String] { pkis.objects.map { "\($0.metadata.namespace ?? "")/\($0.metadata.name ?? "")" } }

    /// Whether `namespace` has a Pki that is not being deleted.
    func hasPkis(in namespace: String) -> Bool {
        pkis.objects.contains { $0.metadata.namespace == namespace && $0.metadata.deletionTimestamp == nil }
    }
}
