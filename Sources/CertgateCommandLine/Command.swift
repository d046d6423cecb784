import CertgatePKI
#if canImport(Glibc)
import Glibc
#endif

/// A mistake in how a command was called: printed with the command's usage, exit status 64
/// (EX_USAGE, as sysexits(3) and swift-argument-parser have it).
public struct UsageError: Error, CustomStringConvertible, Equatable {
    public let description: String

    public init(_ message: String) {
        description = message
    }
}

/// Ends the process with `status` and prints nothing more (the command has said why).
public struct ExitStatus: Error, Equatable {
    public let status: Int32

    public init(_ status: Int32) {
        self.status = status
    }

    public static let failure = ExitStatus(1)
}

/// One command of the tool: its help, its options, and what it runs; or a group of
/// subcommands.
public struct Command: Sendable {
    public let name: String
    public let abstract: String
    public let discussion: String?
    public let optionGroups: [OptionGroup]
    public let positionals: Positionals?
    public let subcommands: [Command]
    let run: (@Sendable (ParsedArguments) throws -> Void)?

    public init(_ name: String, abstract: String, discussion: String? = nil, options: [OptionGroup] = [],
                positionals: Positionals? = nil, run: @escaping @Sendable (ParsedArguments) throws -> Void) {
        self.name = name
        self.abstract = abstract
        self.discussion = discussion
        self.optionGroups = options
        self.positionals = positionals
        self.subcommands = []
        self.run = run
    }

    public init(_ name: String, abstract: String, subcommands: [Command]) {
        self.name = name
        self.abstract = abstract
        self.discussion = nil
        self.optionGroups = []
        self.positionals = nil
        self.subcommands = subcommands
        self.run = nil
    }

    var options: [OptionDefinition] { optionGroups.flatMap { $0.options.map(\.definition) } }

    /// This group of subcommands with `subcommand` last among them.
    func adding(_ subcommand: Command) -> Command {
        Command(name, abstract: abstract, subcommands: subcommands + [subcommand])
    }
}

/// What a command was called with, read through the options it declared.
public struct ParsedArguments: Sendable {
    /// Every value given, by the option's first name, in order.
    let values: [String: [String]]
    public let positionals: [String]

    init(values: [String: [String]], positionals: [String]) {
        self.values = values
        self.positionals = positionals
    }

    /// For tests of a command's reading of its options.
    public static func parse(_ arguments: [String], for command: Command) throws -> ParsedArguments {
        try Parser(command: command).parse(ArraySlice(arguments))
    }

    /// The option's value, or its default.
    public func value<Value>(_ option: Option<Value>) throws -> Value {
        guard let value = try valueIfGiven(option) ?? option.defaultValue else {
            preconditionFailure("\(option.definition.primaryName) has no default: read it with valueIfGiven")
        }
        return value
    }

    /// The option's value, or its default, or nil when it has neither.
    public func valueIfGiven<Value>(_ option: Option<Value>) throws -> Value? {
        try values(option).last ?? option.defaultValue
    }

    /// Every value of a repeatable option, in the order given.
    public func values<Value>(_ option: Option<Value>) throws -> [Value] {
        try (values[option.definition.primaryName] ?? []).map { text in
            guard let value = Value(argument: text) else {
                throw UsageError("\(option.definition.primaryName): \"\(text)\" is not \(Value.expectation)")
            }
            return value
        }
    }

    public func isSet(_ flag: Flag) -> Bool {
        values[flag.definition.primaryName] != nil
    }
}

/// Reads one command's arguments: long options as `--name value` or `--name=value`, short
/// ones as `-n value`, flags alone, `--` before arguments that start with a dash.
struct Parser {
    let command: Command

    func parse(_ arguments: ArraySlice<String>) throws -> ParsedArguments {
        let options = command.options
        var byName: [String: OptionDefinition] = [:]
        for option in options {
            for name in option.names { byName[name] = option }
        }
        var values: [String: [String]] = [:]
        var positionals: [String] = []
        var rest = arguments
        while let argument = rest.popFirst() {
            if argument == "--" {
                positionals += rest
                break
            }
            guard argument.hasPrefix("-"), argument != "-" else {
                positionals.append(argument)
                continue
            }
            let equals = argument.firstIndex(of: "=")
            let name = String(argument[..<(equals ?? argument.endIndex)])
            guard let option = byName[name] else {
                throw UsageError(unknownOptionMessage(name, among: options))
            }
            let value: String
            if let equals {
                guard option.takesValue else { throw UsageError("\(name) takes no value") }
                value = String(argument[argument.index(after: equals)...])
            } else if option.takesValue {
                guard let next = rest.popFirst() else { throw UsageError("\(name) needs a value") }
                value = next
            } else {
                value = ""
            }
            if option.repeatable {
                values[option.primaryName, default: []].append(value)
            } else {
                values[option.primaryName] = [value]
            }
        }
        if !positionals.isEmpty && command.positionals == nil {
            throw UsageError("unexpected argument \"\(positionals[0])\"")
        }
        return ParsedArguments(values: values, positionals: positionals)
    }

    private func unknownOptionMessage(_ name: String, among options: [OptionDefinition]) -> String {
        let names = options.flatMap(\.names).filter { $0.hasPrefix("--") }
        if name.hasPrefix("--"), let match = closestMatch(to: name, among: names) {
            return "unknown option \(name); did you mean \(match)?"
        }
        return "unknown option \(name)"
    }
}
