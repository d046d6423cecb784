import CertgateJSON
import CertgateKube
import CertgatePKI

/// The labels and annotations certgate keeps on a Pki's Secret: spec.secretTemplate's, then
/// its own (which win), as merge-patch changes. A value of nil removes a key: one the
/// template set before and names no more, recorded in the Secret's own
/// certgate.dev/secret-template annotation so keys others put there are never removed.
struct SecretMetadata: Equatable {
    var labels: [String: String?] = [:]
    var annotations: [String: String?] = [:]

    static let templateAnnotation = "certgate.dev/secret-template"

    /// What the Secret of `pki` must carry, given what `existing` has now (nil: a new Secret).
    init(pki: Pki, renewRequest: String?, existing: Secret?) {
        let template = pki.spec.secretTemplate
        let wantedLabels = (template?.labels ?? [:]).filter { !SecretTemplate.ownedLabels.contains($0.key) }
        let wantedAnnotations = (template?.annotations ?? [:]).filter { !SecretTemplate.ownedAnnotations.contains($0.key) }
        let applied = AppliedKeys(existing?.metadata.annotations?[SecretMetadata.templateAnnotation])
        for (key, value) in wantedLabels { labels[key] = .some(value) }
        for key in applied.labels where wantedLabels[key] == nil { labels[key] = .some(nil) }
        for (key, value) in wantedAnnotations { annotations[key] = .some(value) }
        for key in applied.annotations where wantedAnnotations[key] == nil { annotations[key] = .some(nil) }
        let record = AppliedKeys(labels: wantedLabels.keys.sorted(), annotations: wantedAnnotations.keys.sorted())
        if !record.isEmpty {
            annotations[SecretMetadata.templateAnnotation] = .some(record.text)
        } else if !applied.isEmpty {
            annotations[SecretMetadata.templateAnnotation] = .some(nil)
        }
        labels[PkiReconciler.pkiLabel] = .some(pki.metadata.name ?? "")
        if let renewRequest { annotations[PkiReconciler.renewAnnotation] = .some(renewRequest) }
    }

    /// Whether `secret` already carries all of it (a key to remove is absent).
    func isApplied(to secret: Secret) -> Bool {
        labels.allSatisfy { secret.metadata.labels?[$0.key] == $0.value }
            && annotations.allSatisfy { secret.metadata.annotations?[$0.key] == $0.value }
    }

    /// For a new Secret: the keys to set.
    var labelsToSet: [String: String] { labels.compactMapValues { $0 } }
    var annotationsToSet: [String: String]? {
        let values = annotations.compactMapValues { $0 }
        return values.isEmpty ? nil : values
    }
}

/// The template keys certgate applied to a Secret: "labels=a,b;annotations=c" (label and
/// annotation keys hold neither ',' nor ';' nor '=').
private struct AppliedKeys {
    var labels: [String] = []
    var annotations: [String] = []

    init(labels: [String], annotations: [String]) {
        self.labels = labels
        self.annotations = annotations
    }

    init(_ text: String?) {
        for part in (text ?? "").split(separator: ";") {
            let pair = part.split(separator: "=", maxSplits: 1)
            guard pair.count == 2 else { continue }
            let keys = pair[1].split(separator: ",").map(String.init)
            if pair[0] == "labels" { labels = keys } else if pair[0] == "annotations" { annotations = keys }
        }
    }

    var isEmpty: Bool { labels.isEmpty && annotations.isEmpty }

    var text: String {
        [("labels", labels), ("annotations", annotations)].filter { !$0.1.isEmpty }
            .map { "\($0.0)=\($0.1.joined(separator: ","))" }.joined(separator: ";")
    }
}

/// A merge patch of a Secret's metadata (and data): nil values in the maps are JSON null,
/// which removes the key.
struct SecretPatch: Encodable {
    struct Metadata: Encodable {
        var resourceVersion: String?
        var labels: [String: String?]
        var annotations: [String: String?]?
        var ownerReferences: [OwnerReference]?
    }

    var metadata: Metadata
    var data: [String: String]?

    /// `metadata`'s labels and annotations (none when it has none), owners if given, and
    /// `data` base64-encoded as a Secret holds it.
    init(_ metadata: SecretMetadata, resourceVersion: String?, ownerReferences: [OwnerReference]?, data: [String: [UInt8]]) {
        self.metadata = Metadata(resourceVersion: resourceVersion, labels: metadata.labels,
                                 annotations: metadata.annotations.isEmpty ? nil : metadata.annotations, ownerReferences: ownerReferences)
        self.data = data.isEmpty ? nil : data.mapValues { Base64.encode($0) }
    }
}
