import CertgateTestSupport
import Foundation
import Testing

/// The README and docs/ are read from a clone alone: every link they make to a file lands on
/// a file of the repository, and every link to a heading lands on a heading.
struct DocumentationTests {
    static let pages: [String] = {
        let docs = (try? FileManager.default.contentsOfDirectory(atPath: "\(repositoryRoot)/docs")) ?? []
        return ["README.md"] + docs.filter { $0.hasSuffix(".md") }.sorted().map { "docs/\($0)" }
    }()

    @Test func theProductIsDocumentedInTheRepository() {
        for page in ["docs/README.md", "docs/pki.md", "docs/policy.md", "docs/reconciler.md", "docs/operations.md", "docs/benchmarks.md"] {
            #expect(Self.pages.contains(page), "\(page) is missing")
        }
    }

    @Test(arguments: pages)
    func everyLinkStaysInsideTheRepositoryAndLands(_ page: String) throws {
        let text = try String(contentsOfFile: "\(repositoryRoot)/\(page)", encoding: .utf8)
        let folder = (page as NSString).deletingLastPathComponent
        let links = markdownLinks(text)
        #expect(!links.isEmpty || page != "README.md")
        for link in links where !link.hasPrefix("https://") && !link.hasPrefix("http://") && !link.hasPrefix("mailto:") {
            let parts = link.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            let target = parts[0].isEmpty ? page : normalized(folder.isEmpty ? parts[0] : "\(folder)/\(parts[0])")
            #expect(!target.hasPrefix("../") && !target.hasPrefix("/"), "\(page): \(link) leaves the repository")
            var isDirectory: ObjCBool = false
            let exists = FileManager.default.fileExists(atPath: "\(repositoryRoot)/\(target)", isDirectory: &isDirectory)
            #expect(exists, "\(page): \(link) names \(target), which does not exist")
            if exists, !isDirectory.boolValue, parts.count == 2, target.hasSuffix(".md") {
                let anchors = headingAnchors(try String(contentsOfFile: "\(repositoryRoot)/\(target)", encoding: .utf8))
                #expect(anchors.contains(parts[1]), "\(page): \(link) names no heading of \(target)")
            }
        }
        // Paths in prose and code spans too: none may climb out of the repository.
        for climb in text.ranges(of: /(\.\.\/)+[A-Za-z0-9_.-]+/) {
            let path = String(text[climb])
            #expect(!normalized(folder.isEmpty ? path : "\(folder)/\(path)").hasPrefix(".."),
                    "\(page) mentions \(path), outside the repository, which a clone does not have")
        }
    }
}

/// The targets of `[text](target)` outside code blocks and code spans.
private func markdownLinks(_ text: String) -> [String] {
    var links: [String] = []
    var inFence = false
    for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
        if line.hasPrefix("```") { inFence.toggle(); continue }
        if inFence || line.hasPrefix("    ") { continue }
        let outsideCode = line.split(separator: "`", omittingEmptySubsequences: false).enumerated().filter { $0.offset % 2 == 0 }.map(\.element).joined(separator: " ")
        var rest = Substring(outsideCode)
        while let open = rest.range(of: "](") {
            let after = rest[open.upperBound...]
            guard let close = after.firstIndex(of: ")") else { break }
            links.append(String(after[..<close]))
            rest = after[after.index(after: close)...]
        }
    }
    return links
}

/// GitHub's anchors for a page's headings: lower-cased, punctuation dropped, spaces as dashes.
private func headingAnchors(_ text: String) -> Set<String> {
    var anchors: Set<String> = []
    for line in text.split(separator: "\n") where line.hasPrefix("#") {
        let title = line.drop { $0 == "#" }.trimmingCharacters(in: .whitespaces).lowercased()
        let kept = title.unicodeScalars.filter { CharacterSet.alphanumerics.contains($0) || $0 == " " || $0 == "-" || $0 == "_" }
        anchors.insert(String(String.UnicodeScalarView(kept)).replacingOccurrences(of: " ", with: "-"))
    }
    return anchors
}

/// `docs/../README.md` as `README.md`; a path that climbs out keeps its leading `..`.
private func normalized(_ path: String) -> String {
    var parts: [Substring] = []
    for part in path.split(separator: "/") {
        if part == "." { continue }
        if part == "..", let last = parts.last, last != ".." { parts.removeLast() } else { parts.append(part) }
    }
    return parts.joined(separator: "/")
}
