import CYAML

/// A text that is not YAML, or a document this reader will not build, and where.
public struct YAMLError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What is wrong, in libyaml's words where libyaml found it.
    public var problem: String
    public var mark: YAMLMark?

    public init(_ problem: String, at mark: YAMLMark? = nil) {
        self.problem = problem
        self.mark = mark
    }

    public var description: String { mark.map { "\(problem) at \($0)" } ?? problem }
}

/// Reads YAML text into ``YAMLNode`` trees with libyaml's parser (YAML 1.1, as kubectl).
///
/// Aliases are expanded as they are read, under a bound on the nodes they may produce (a
/// "billion laughs" document is refused rather than built), and nesting is bounded so that
/// nothing walking a tree later can run out of stack.
public enum YAML {
    /// Deepest nesting of sequences and mappings accepted.
    public static let maximumDepth = 256
    /// Most nodes a stream may hold once its aliases are expanded.
    public static let maximumNodes = 1_000_000

    /// Every document of a stream (`---` separated), in order. An empty stream has none; an
    /// empty document is a null scalar. Throws ``YAMLError``.
    public static func documents(in text: String) throws -> [YAMLNode] {
        // libyaml needs a pointer to read from, which an empty buffer need not have.
        guard !text.isEmpty else { return [] }
        var text = text
        return try text.withUTF8 { bytes in
            var builder = TreeBuilder()
            try withEvents(of: bytes) { event in try builder.consume(event) }
            return builder.documents
        }
    }

    /// The one document of a text meant to hold one (a policy file, a kubeconfig): nil when
    /// the text has no document, a ``YAMLError`` when it has more than one.
    public static func document(in text: String) throws -> YAMLNode? {
        let documents = try documents(in: text)
        if documents.count > 1 {
            throw YAMLError("expected a single document, but found another document", at: documents[1].mark)
        }
        return documents.first
    }

    /// Runs libyaml's event parser over `bytes` (not empty), handing each event to `body`. The
    /// parser and each event are freed here; `body` sees them only for the length of the call.
    private static func withEvents(of bytes: UnsafeBufferPointer<UInt8>,
                                   _ body: (yaml_event_t) throws -> Void) throws {
        let parser = UnsafeMutablePointer<yaml_parser_t>.allocate(capacity: 1)
        defer { parser.deallocate() }
        guard yaml_parser_initialize(parser) == 1 else { throw YAMLError("libyaml could not allocate a parser") }
        defer { yaml_parser_delete(parser) }
        yaml_parser_set_input_string(parser, bytes.baseAddress!, bytes.count)
        var event = yaml_event_t()
        while true {
            guard yaml_parser_parse(parser, &event) == 1 else { throw parserError(parser.pointee) }
            defer { yaml_event_delete(&event) }
            if event.type == YAML_STREAM_END_EVENT { return }
            try body(event)
        }
    }

    private static func parserError(_ parser: yaml_parser_t) -> YAMLError {
        let problem = parser.problem.map { String(cString: $0) } ?? "not valid YAML"
        if parser.error == YAML_READER_ERROR {
            return YAMLError("\(problem) at byte \(parser.problem_offset)")
        }
        return YAMLError(problem, at: YAMLMark(parser.problem_mark))
    }
}

extension YAMLMark {
    init(_ mark: yaml_mark_t) {
        self.init(line: Int(mark.line) + 1, column: Int(mark.column) + 1)
    }
}

/// Builds trees from parser events: a stack of the sequences and mappings still open.
private struct TreeBuilder {
    private struct Frame {
        var isMapping: Bool
        var tag: String?
        var anchor: String?
        var mark: YAMLMark
        var items: [YAMLNode] = []
        var entries: [(key: YAMLNode, value: YAMLNode)] = []
        var keys: Set<String> = []
        var pendingKey: YAMLNode?
        /// Nodes held so far, aliases counted at their expanded size.
        var size = 0
    }

    private(set) var documents: [YAMLNode] = []
    private var stack: [Frame] = []
    /// Anchored nodes of the current document, with the count of nodes each holds.
    private var anchors: [String: (node: YAMLNode, size: Int)] = [:]
    private var nodeCount = 0

    mutating func consume(_ event: yaml_event_t) throws {
        let mark = YAMLMark(event.start_mark)
        switch event.type {
        case YAML_DOCUMENT_START_EVENT:
            anchors = [:]
        case YAML_SCALAR_EVENT:
            let scalar = event.data.scalar
            let text = String(decoding: UnsafeBufferPointer(start: scalar.value, count: scalar.length), as: UTF8.self)
            let node = YAMLNode(.scalar(text, plain: scalar.style == YAML_PLAIN_SCALAR_STYLE), tag: string(scalar.tag), mark: mark)
            try finish(node, size: 1, anchor: string(scalar.anchor))
        case YAML_ALIAS_EVENT:
            let name = string(event.data.alias.anchor) ?? ""
            guard let anchored = anchors[name] else { throw YAMLError("unknown alias \"\(name)\"", at: mark) }
            try finish(anchored.node, size: anchored.size, anchor: nil)
        case YAML_SEQUENCE_START_EVENT:
            let start = event.data.sequence_start
            try open(Frame(isMapping: false, tag: string(start.tag), anchor: string(start.anchor), mark: mark))
        case YAML_MAPPING_START_EVENT:
            let start = event.data.mapping_start
            try open(Frame(isMapping: true, tag: string(start.tag), anchor: string(start.anchor), mark: mark))
        case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
            let frame = stack.removeLast()
            let content: YAMLNode.Content = frame.isMapping ? .mapping(try merged(frame.entries)) : .sequence(frame.items)
            try finish(YAMLNode(content, tag: frame.tag, mark: frame.mark), size: frame.size + 1, anchor: frame.anchor)
        default:
            break
        }
    }

    /// Applies YAML's merge key as kubectl does: `<<: *base` (or a list of them) adds the
    /// entries of the named mappings whose keys the mapping does not set itself; with a list,
    /// the earlier mapping wins.
    private func merged(_ entries: [(key: YAMLNode, value: YAMLNode)]) throws -> [(key: YAMLNode, value: YAMLNode)] {
        func isMergeKey(_ key: YAMLNode) -> Bool {
            guard case .scalar("<<", let plain) = key.content else { return false }
            return plain && (key.tag == nil || key.tag == YAMLNode.tagPrefix + "merge")
        }
        guard entries.contains(where: { isMergeKey($0.key) }) else { return entries }
        var result = entries.filter { !isMergeKey($0.key) }
        var keys = Set(result.compactMap { $0.key.string })
        for entry in entries where isMergeKey(entry.key) {
            let sources = entry.value.sequence ?? [entry.value]
            for source in sources {
                guard let sourceEntries = source.mapping else {
                    throw YAMLError("a merge key (<<) takes a mapping or a list of mappings", at: source.mark)
                }
                for sourceEntry in sourceEntries {
                    guard let name = sourceEntry.key.string else { continue }
                    if keys.insert(name).inserted { result.append(sourceEntry) }
                }
            }
        }
        return result
    }

    private mutating func open(_ frame: Frame) throws {
        guard stack.count < YAML.maximumDepth else {
            throw YAMLError("nested deeper than \(YAML.maximumDepth) levels", at: frame.mark)
        }
        stack.append(frame)
    }

    /// A complete node: remembered under its anchor and added to what holds it.
    private mutating func finish(_ node: YAMLNode, size: Int, anchor: String?) throws {
        nodeCount += size
        guard nodeCount <= YAML.maximumNodes else {
            throw YAMLError("more than \(YAML.maximumNodes) nodes once aliases are expanded", at: node.mark)
        }
        if let anchor { anchors[anchor] = (node, size) }
        guard !stack.isEmpty else {
            documents.append(node)
            return
        }
        let top = stack.count - 1
        stack[top].size += size
        guard stack[top].isMapping else {
            stack[top].items.append(node)
            return
        }
        guard let key = stack[top].pendingKey else {
            stack[top].pendingKey = node
            return
        }
        if let name = key.string, !stack[top].keys.insert(name).inserted {
            throw YAMLError("duplicated key \"\(name)\"", at: key.mark)
        }
        stack[top].entries.append((key, node))
        stack[top].pendingKey = nil
    }

    private func string(_ pointer: UnsafeMutablePointer<yaml_char_t>?) -> String? {
        pointer.map { String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self)) }
    }
}
