import CertgateHTTP
import CertgateYAML
import Foundation

/// What the API server answers `kubectl get` with (Accept: as=Table): the columns a custom
/// resource's CRD declares (additionalPrinterColumns, after Name), each cell its JSONPath's
/// value, dates as ages, as the apiextensions table convertor makes them.
struct PrinterColumns {
    struct Column {
        let name: String
        let type: String
        let format: String?
        let description: String
        let priority: Int
        let jsonPath: String
    }

    let columns: [Column]

    /// The columns of the first version of the CRD in `file`; none when it cannot be read.
    init(crdFile file: String) {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8), let crd = try? YAML.document(in: text),
              let entries = crd["spec"]?["versions"]?.sequence?.first?["additionalPrinterColumns"]?.sequence else {
            columns = []
            return
        }
        columns = entries.compactMap { entry in
            guard let name = entry["name"]?.string, let path = entry["jsonPath"]?.string else { return nil }
            return Column(name: name, type: entry["type"]?.string ?? "string", format: entry["format"]?.string,
                          description: entry["description"]?.string ?? "", priority: entry["priority"]?.string.flatMap { Int($0) } ?? 0,
                          jsonPath: path)
        }
    }

    /// The Table of `objects`, each row with its object's metadata.
    func table(_ objects: [[String: Any]], resourceVersion: String, now: Date = Date()) -> [String: Any] {
        var definitions: [[String: Any]] = [["name": "Name", "type": "string", "format": "name", "priority": 0,
                                             "description": "Name must be unique within a namespace."]]
        for column in columns {
            var definition: [String: Any] = ["name": column.name, "type": column.type, "description": column.description, "priority": column.priority]
            if let format = column.format { definition["format"] = format }
            definitions.append(definition)
        }
        let rows = objects.map { object -> [String: Any] in
            let metadata = object["metadata"] as? [String: Any] ?? [:]
            var cells: [Any] = [metadata["name"] ?? ""]
            for column in columns {
                let value = PrinterColumns.evaluate(column.jsonPath, in: object)
                if column.type == "date", let text = value as? String, let date = ISO8601DateFormatter().date(from: text) {
                    cells.append(PrinterColumns.age(since: date, now: now))
                } else {
                    cells.append(value ?? NSNull())
                }
            }
            return ["cells": cells, "object": ["kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": metadata]]
        }
        return ["kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": ["resourceVersion": resourceVersion],
                "columnDefinitions": definitions, "rows": rows]
    }

    /// The JSONPath subset printer columns use: `.a.b`, and `[?(@.key=="value")]` on a list
    /// (the first match).
    static func evaluate(_ path: String, in object: Any) -> Any? {
        var current: Any? = object
        var rest = Substring(path)
        while !rest.isEmpty, let value = current {
            if rest.hasPrefix("[?(@.") {
                guard let close = rest.range(of: ")]") else { return nil }
                let condition = rest[rest.index(rest.startIndex, offsetBy: 5)..<close.lowerBound]
                let parts = condition.components(separatedBy: "==")
                guard parts.count == 2 else { return nil }
                let wanted = parts[1].trimmingCharacters(in: CharacterSet(charactersIn: "\"' "))
                current = (value as? [[String: Any]])?.first { ($0[parts[0]] as? String) == wanted }
                rest = rest[close.upperBound...]
            } else if rest.hasPrefix(".") {
                rest = rest.dropFirst()
                let end = rest.firstIndex { $0 == "." || $0 == "[" } ?? rest.endIndex
                current = (value as? [String: Any])?[String(rest[..<end])]
                rest = rest[end...]
            } else {
                return nil
            }
        }
        return current
    }

    /// An age as kubectl prints one: 45s, 5m12s, 3h, 12d.
    static func age(since date: Date, now: Date) -> String {
        let seconds = max(0, Int(now.timeIntervalSince(date)))
        switch seconds {
        case ..<120: return "\(seconds)s"
        case ..<600: return "\(seconds / 60)m\(seconds % 60 == 0 ? "" : "\(seconds % 60)s")"
        case ..<(3 * 3600): return "\(seconds / 60)m"
        case ..<(48 * 3600): return "\(seconds / 3600)h"
        default: return "\(seconds / 86400)d"
        }
    }
}

extension HTTPRequest {
    var asksForTable: Bool {
        let first = (headers["accept"] ?? "").split(separator: ",").first ?? ""
        return first.contains("as=Table")
    }
}
