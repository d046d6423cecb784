/// A type an option's argument is read as.
public protocol ArgumentValue: Sendable {
    init?(argument: String)
    /// What an argument must look like, for the error that refuses one: "an integer".
    static var expectation: String { get }
    /// How the value is shown as a default in help.
    var helpDescription: String { get }
    /// Every value there is, when there are few: what shell completion offers.
    static var choices: [String]? { get }
}

extension ArgumentValue {
    public static var choices: [String]? { nil }
}

extension ArgumentValue where Self: CustomStringConvertible {
    public var helpDescription: String { description }
}

extension String: ArgumentValue {
    public init?(argument: String) { self = argument }
    public static var expectation: String { "text" }
}

extension Int: ArgumentValue {
    public init?(argument: String) { self.init(argument) }
    public static var expectation: String { "an integer" }
}

extension UInt16: ArgumentValue {
    public init?(argument: String) { self.init(argument) }
    public static var expectation: String { "an integer from 0 to 65535" }
}

extension Double: ArgumentValue {
    public init?(argument: String) {
        guard let value = Double(argument), value.isFinite else { return nil }
        self = value
    }
    public static var expectation: String { "a number" }
}

/// A Bool option takes its value as `--name=true` or `--name false`, as Kubernetes
/// components' flags do; a flag that needs no value is a `Flag`.
extension Bool: ArgumentValue {
    public init?(argument: String) {
        switch argument {
        case "true": self = true
        case "false": self = false
        default: return nil
        }
    }
    public static var expectation: String { "true or false" }
    public static var choices: [String]? { ["true", "false"] }
}

/// An enumeration of names (`--output text|json|github`) reads its raw values.
extension ArgumentValue where Self: RawRepresentable, RawValue == String, Self: CaseIterable {
    public init?(argument: String) { self.init(rawValue: argument) }
    public static var expectation: String {
        let names = allCases.map(\.rawValue)
        return names.count < 2 ? names.joined() : names.dropLast().joined(separator: ", ") + " or " + names.last!
    }
    public var helpDescription: String { rawValue }
    public static var choices: [String]? { allCases.map(\.rawValue) }
}

/// What help and the parser know of one option or flag, whatever its value's type.
public struct OptionDefinition: Sendable {
    /// Long names with their dashes, the first the one shown; then a short name, if any.
    public let names: [String]
    public let help: String
    /// False for a flag: it is given or not, and takes no value.
    public let takesValue: Bool
    public let repeatable: Bool
    public let defaultDescription: String?
    /// Every value the option takes, when its type names them (an enumeration, a Bool).
    public let valueChoices: [String]?

    /// The name values are stored under.
    public var primaryName: String { names[0] }

    /// `<tls-cert-file>` for --tls-cert-file.
    var placeholder: String { "<" + primaryName.drop { $0 == "-" } + ">" }
}

/// Anything a command lists among its options.
public protocol OptionDeclaration: Sendable {
    var definition: OptionDefinition { get }
}

/// An option that takes a value: `--port 8443` or `--port=8443`.
public struct Option<Value: ArgumentValue>: OptionDeclaration {
    public let definition: OptionDefinition
    let defaultValue: Value?

    /// `name` is the long name with its dashes; `aliases` are further long names read the
    /// same; `short` a one-letter name (`-n`). Given several times, the last value counts,
    /// unless the option is `repeatable` (then every value does, in order).
    public init(_ name: String, aliases: [String] = [], short: Character? = nil, default defaultValue: Value? = nil,
                repeatable: Bool = false, help: String) {
        precondition(name.hasPrefix("--"), "an option's name starts with --")
        definition = OptionDefinition(names: [name] + aliases + (short.map { ["-\($0)"] } ?? []), help: help, takesValue: true,
                                      repeatable: repeatable, defaultDescription: defaultValue?.helpDescription,
                                      valueChoices: Value.choices)
        self.defaultValue = defaultValue
    }
}

/// An option given or not, with no value: `--force`.
public struct Flag: OptionDeclaration {
    public let definition: OptionDefinition

    public init(_ name: String, help: String) {
        precondition(name.hasPrefix("--"), "a flag's name starts with --")
        definition = OptionDefinition(names: [name], help: help, takesValue: false, repeatable: false, defaultDescription: nil,
                                      valueChoices: nil)
    }
}

/// Options shown together in help under a title (the first group has none).
public struct OptionGroup: Sendable {
    public let title: String?
    public let options: [any OptionDeclaration]

    public init(_ options: [any OptionDeclaration]) {
        self.title = nil
        self.options = options
    }

    public init(_ title: String, _ options: [any OptionDeclaration]) {
        self.title = title
        self.options = options
    }
}

/// The arguments after the options: `certgate renew NAME...`.
public struct Positionals: Sendable {
    public let name: String
    public let help: String
    /// Every value an argument may be, when there are few: what shell completion offers.
    public let choices: [String]?

    public init(_ name: String, help: String, choices: [String]? = nil) {
        self.name = name
        self.help = help
        self.choices = choices
    }
}
