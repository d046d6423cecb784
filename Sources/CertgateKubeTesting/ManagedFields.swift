import Foundation

/// `metadata.managedFields` as kube-apiserver keeps them for Update operations (what every
/// client here sends; no server-side apply): one entry per manager and subresource, owning
/// the fields its writes changed, in the FieldsV1 encoding the recordings show.
struct ManagedFields {
    let kind: ResourceKind

    /// The entries after `manager` wrote `written` (the object as the request made it, after
    /// pruning and before the server's own defaults) over `old` (nil for a create), through
    /// `subresource` ("status" or nil). Fields the write changed move to this manager; fields
    /// it removed leave every manager; entries left with nothing are dropped.
    func entries(old: [String: Any]?, written: [String: Any], existing: [[String: Any]], manager: String,
                 subresource: String?, time: String) -> [[String: Any]] {
        let scope: (String) -> Bool = { key in
            guard kind.hasStatus else { return true }
            return subresource == "status" ? key == "status" : key != "status"
        }
        let before = old.map { leaves(of: $0, scope: scope) } ?? [:]
        let after = leaves(of: written, scope: scope)
        let changed = Set(after.filter { before[$0.key] != $0.value }.keys)
        let removed = Set(before.keys).subtracting(after.keys)
        var entries = existing.map { entry -> (entry: [String: Any], fields: Set<[String]>) in
            var fields = paths(of: entry["fieldsV1"] as? [String: Any] ?? [:])
            let sameWriter = entry["manager"] as? String == manager && entry["subresource"] as? String == subresource
            if !sameWriter { fields.subtract(changed) }
            fields.subtract(removed)
            return (entry, fields)
        }
        if let index = entries.firstIndex(where: { $0.entry["manager"] as? String == manager && $0.entry["subresource"] as? String == subresource }) {
            if !changed.isEmpty {
                entries[index].fields.formUnion(changed)
                entries[index].entry["time"] = time
            }
        } else if !changed.isEmpty {
            var entry: [String: Any] = ["manager": manager, "operation": "Update", "apiVersion": kind.apiVersion, "time": time,
                                        "fieldsType": "FieldsV1"]
            if let subresource { entry["subresource"] = subresource }
            entries.append((entry, changed))
        }
        return entries.filter { !$0.fields.isEmpty }.map { item in
            var entry = item.entry
            entry["fieldsV1"] = tree(of: item.fields)
            return entry
        }
    }

    /// Every owned path of `object` with its value (as JSON text), "." standing for a map
    /// that is a field itself.
    private func leaves(of object: [String: Any], scope: (String) -> Bool) -> [[String]: String] {
        var result: [[String]: String] = [:]
        for (key, value) in object where scope(key) && key != "apiVersion" && key != "kind" {
            if key == "metadata", let metadata = value as? [String: Any] {
                // Of metadata only what clients own is tracked.
                for field in ["labels", "annotations", "ownerReferences", "finalizers"] {
                    if let child = metadata[field] { collect(child, field: field, at: ["f:metadata"], into: &result) }
                }
            } else {
                collect(value, field: key, at: [], into: &result)
            }
        }
        return result
    }

    private func collect(_ value: Any, field: String, at parent: [String], into result: inout [[String]: String]) {
        let path = parent + ["f:\(field)"]
        switch (field, value) {
        case ("ownerReferences", let references as [[String: Any]]):
            // A list keyed by uid whose items are atomic.
            result[path + ["."]] = ""
            for reference in references {
                result[path + ["k:{\"uid\":\(jsonText(reference["uid"] ?? ""))}"]] = jsonText(reference)
            }
        case ("finalizers", let names as [String]):
            result[path + ["."]] = ""
            for name in names { result[path + ["v:\(jsonText(name))"]] = "" }
        case (_, let map as [String: Any]):
            switch mapKind(field, under: parent) {
            case .atomic:
                result[path] = jsonText(map)
            case .map:
                result[path + ["."]] = ""
                for (key, child) in map { collect(child, field: key, at: path, into: &result) }
            case .structure:
                for (key, child) in map { collect(child, field: key, at: path, into: &result) }
            }
        default:
            result[path] = jsonText(value)
        }
    }

    private enum MapKind { case map, structure, atomic }

    /// Unstructured objects (custom resources) are maps all the way down. Built-in kinds are
    /// Go structs: a struct field is no field of its own (no "."), a Go map is, and some
    /// structs are atomic (an Event's involvedObject, an ObjectReference).
    private func mapKind(_ field: String, under parent: [String]) -> MapKind {
        if parent == ["f:metadata"] { return .map }
        if kind.isCustomResource { return .map }
        if field == "involvedObject" { return .atomic }
        return ["data", "stringData", "labels", "annotations"].contains(field) && parent.isEmpty ? .map : .structure
    }

    private func paths(of tree: [String: Any], prefix: [String] = []) -> Set<[String]> {
        var result = Set<[String]>()
        for (key, value) in tree {
            let children = value as? [String: Any] ?? [:]
            if children.isEmpty { result.insert(prefix + [key]) } else { result.formUnion(paths(of: children, prefix: prefix + [key])) }
        }
        return result
    }

    private func tree(of paths: Set<[String]>) -> [String: Any] {
        var root: [String: Any] = [:]
        for path in paths { insert(path[...], into: &root) }
        return root
    }

    private func insert(_ path: ArraySlice<String>, into node: inout [String: Any]) {
        guard let first = path.first else { return }
        var child = node[first] as? [String: Any] ?? [:]
        insert(path.dropFirst(), into: &child)
        node[first] = child
    }
}

/// Compact JSON of any JSON value, keys sorted, to compare values.
public func jsonText(_ value: Any) -> String {
    if let string = value as? String { return "\"\(string)\"" }
    guard JSONSerialization.isValidJSONObject(value),
          let data = try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .withoutEscapingSlashes]) else {
        return "\(value)"
    }
    return String(decoding: data, as: UTF8.self)
}
