import CertgatePKI
#if canImport(Glibc)
import Glibc
#endif

/// A command-line tool: finds the subcommand its arguments name, reads its options, runs it
/// and exits with its status. `--help` (or `-h`, or `help SUBCOMMAND...`) prints a command's
/// help on standard output.
public struct Tool: Sendable {
    public let root: Command

    /// A tool with subcommands gains `completion` among them, and with a `version`, a
    /// `version` subcommand that prints it (also run by `--version`).
    public init(_ root: Command, version: String? = nil) {
        var root = root
        if let version, !root.subcommands.isEmpty {
            root = root.adding(Command("version", abstract: "Print \(root.name)'s version.") { _ in writeAll(version + "\n", to: 1) })
        }
        self.root = Command.addingCompletion(to: root)
    }

    /// What running `arguments` (without the program name) comes to.
    public enum Outcome: Equatable {
        case ran
        case help(String)
        case usageError(String)
        case exit(Int32)
        case failed(String)
    }

    /// Runs the command and exits the process.
    public func main(_ arguments: [String] = Array(CommandLine.arguments.dropFirst())) -> Never {
        switch run(arguments) {
        case .ran:
            exit(0)
        case .help(let text):
            writeAll(text, to: 1)
            exit(0)
        case .usageError(let text):
            writeAll(text, to: 2)
            exit(64)
        case .exit(let status):
            exit(status)
        case .failed(let text):
            writeAll(text, to: 2)
            exit(1)
        }
    }

    public func run(_ arguments: [String]) -> Outcome {
        var command = root
        var path = [root.name]
        var rest = ArraySlice(arguments)
        if rest.first == "--version", root.subcommands.contains(where: { $0.name == "version" }) {
            rest = ["version"]
        }
        if rest.first == "help" {
            // `certgate help serve` is `certgate serve --help`.
            rest = rest.dropFirst()
            while let name = rest.first, let sub = command.subcommands.first(where: { $0.name == name }) {
                command = sub
                path.append(name)
                rest = rest.dropFirst()
            }
            return .help(Help(command: command, path: path).text)
        }
        while !command.subcommands.isEmpty {
            guard let name = rest.first, !name.hasPrefix("-") else {
                return .help(Help(command: command, path: path).text)
            }
            guard let sub = command.subcommands.first(where: { $0.name == name }) else {
                let names = command.subcommands.map(\.name)
                let hint = closestMatch(to: name, among: names).map { "; did you mean \($0)?" } ?? " (\(names.joined(separator: ", ")))"
                return usageError("unknown subcommand \"\(name)\"\(hint)", command: command, path: path)
            }
            command = sub
            path.append(name)
            rest = rest.dropFirst()
        }
        let beforeDashes = rest.prefix { $0 != "--" }
        if beforeDashes.contains("--help") || beforeDashes.contains("-h") {
            return .help(Help(command: command, path: path).text)
        }
        do {
            let parsed = try Parser(command: command).parse(rest)
            try command.run?(parsed)
            return .ran
        } catch let error as UsageError {
            return usageError(error.description, command: command, path: path)
        } catch let error as ExitStatus {
            return .exit(error.status)
        } catch {
            return .failed("Error: \(error)\n")
        }
    }

    private func usageError(_ message: String, command: Command, path: [String]) -> Outcome {
        let name = path.joined(separator: " ")
        return .usageError("Error: \(message)\nUsage: \(Help(command: command, path: path).usage)\n  See '\(name) --help' for more information.\n")
    }
}

/// A command's help: what it does, how it is called, and every option with its default.
struct Help {
    let command: Command
    let path: [String]

    static let width = 100
    static let nameColumn = 32

    var usage: String {
        var usage = path.joined(separator: " ")
        if !command.subcommands.isEmpty { return usage + " <subcommand>" }
        if !command.options.isEmpty { usage += " [<options>]" }
        if let positionals = command.positionals { usage += " <\(positionals.name)> ..." }
        return usage
    }

    var text: String {
        var text = Help.wrap("OVERVIEW: \(command.abstract)", indent: 0) + "\n"
        if let discussion = command.discussion {
            text += Help.wrap(discussion, indent: 0) + "\n"
        }
        text += "USAGE: \(usage)\n\n"
        if let positionals = command.positionals {
            text += "ARGUMENTS:\n" + Help.entry("<\(positionals.name)>", positionals.help) + "\n"
        }
        for (index, group) in command.optionGroups.enumerated() {
            text += (index == 0 ? "OPTIONS" : (group.title ?? "MORE OPTIONS").uppercased()) + ":\n"
            for option in group.options.map(\.definition) {
                let shorts = option.names.filter { !$0.hasPrefix("--") }
                let longs = option.names.filter { $0.hasPrefix("--") }
                var names = (shorts + longs).joined(separator: ", ")
                if option.takesValue { names += " \(option.placeholder)" }
                var help = option.help
                if let value = option.defaultDescription { help += " (default: \(value))" }
                text += Help.entry(names, help)
            }
            text += "\n"
        }
        if !command.subcommands.isEmpty {
            text += "SUBCOMMANDS:\n"
            for sub in command.subcommands { text += Help.entry(sub.name, sub.abstract) }
            text += "\n  See '\(path.joined(separator: " ")) help <subcommand>' for detailed help.\n"
        } else {
            text += "  -h, --help" + String(repeating: " ", count: Help.nameColumn - 12) + "Show help information.\n"
        }
        return text
    }

    /// "  NAMES   help wrapped in the right column", the help on a line of its own when the
    /// names fill the left one.
    static func entry(_ names: String, _ help: String) -> String {
        let left = "  " + names
        let body = wrap(help, indent: nameColumn)
        if left.count + 2 <= nameColumn {
            return left + String(repeating: " ", count: nameColumn - left.count) + body.drop { $0 == " " }
        }
        return left + "\n" + body
    }

    /// `text` broken into lines of at most `width` columns, each indented by `indent`.
    static func wrap(_ text: String, indent: Int) -> String {
        let margin = String(repeating: " ", count: indent)
        var result = ""
        var line = ""
        for word in text.split(separator: " ", omittingEmptySubsequences: true) {
            if !line.isEmpty && indent + line.count + 1 + word.count > width {
                result += margin + line + "\n"
                line = ""
            }
            line += (line.isEmpty ? "" : " ") + word
        }
        if !line.isEmpty { result += margin + line + "\n" }
        return result
    }
}
