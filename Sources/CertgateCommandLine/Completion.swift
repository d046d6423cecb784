/// The shells `TOOL completion SHELL` writes a script for.
public enum Shell: String, ArgumentValue, CaseIterable, Sendable {
    case bash, zsh
}

extension Command {
    /// The tool's commands with `completion` among them: it prints a script that completes
    /// subcommands, options and the values of options whose type names them, made from the
    /// same declarations the parser reads, so the two cannot disagree.
    static func addingCompletion(to root: Command) -> Command {
        guard !root.subcommands.isEmpty, !root.subcommands.contains(where: { $0.name == "completion" }) else { return root }
        let completion = Command(
            "completion",
            abstract: "Print a script that completes \(root.name)'s commands and options in bash or zsh.",
            discussion: "bash: add 'source <(\(root.name) completion bash)' to ~/.bashrc, or save the script as "
                + "/etc/bash_completion.d/\(root.name). zsh: add 'source <(\(root.name) completion zsh)' to ~/.zshrc, "
                + "after compinit.",
            positionals: Positionals("shell", help: "\(Shell.expectation).", choices: Shell.choices)
        ) { arguments in
            guard arguments.positionals.count == 1, let shell = Shell(argument: arguments.positionals[0]) else {
                throw UsageError("completion takes one shell: \(Shell.expectation)")
            }
            writeAll(CompletionScript(root: addingCompletion(to: root), shell: shell).text, to: 1)
        }
        return root.adding(completion)
    }
}

/// A bash completion function for a command tree (zsh runs the same through bashcompinit).
///
/// It finds the subcommand the words before the cursor name, then offers the values of the
/// option before the cursor (none, so the shell offers file names, when the option's type
/// does not name them), or that command's options when the word starts with a dash, or its
/// subcommands or argument choices otherwise.
public struct CompletionScript {
    public let root: Command
    public let shell: Shell

    public init(root: Command, shell: Shell) {
        self.root = root
        self.shell = shell
    }

    public var text: String {
        let function = "_" + String(root.name.map { $0.isLetter || $0.isNumber ? $0 : "_" }) + "_complete"
        let commands = CompletionScript.commands(root, path: [root.name])
        var lines: [String] = []
        lines.append("# \(shell.rawValue) completion for \(root.name): source <(\(root.name) completion \(shell.rawValue))")
        if shell == .zsh {
            lines.append("autoload -U +X bashcompinit && bashcompinit")
        }
        lines.append("""
            \(function)() {
                local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}" command=\(quoted(root.name)) option="" prefix="" i=1
                while (( i < COMP_CWORD )); do
                    case "$command ${COMP_WORDS[i]}" in
                    \(patterns(commands.dropFirst().map(\.path)))) command="$command ${COMP_WORDS[i]}" ;;
                    *) break ;;
                    esac
                    i=$(( i + 1 ))
                done
                # bash splits --name=value at '=' ("--name" "=" "value") and completes what follows
                # it; zsh keeps it one word and completes the whole.
                if [[ "$cur" == "=" ]]; then option="$prev" cur=""
                elif [[ "$prev" == "=" ]]; then option="${COMP_WORDS[COMP_CWORD-2]}"
                elif [[ "$cur" == -*=* ]]; then option="${cur%%=*}" prefix="${cur%%=*}=" cur="${cur#*=}"
                elif [[ "$prev" == -* ]]; then option="$prev"
                fi
                if [[ -n "$option" ]]; then
                    case "$command $option" in
            """)
        var valuesWithoutChoices: [String] = []
        for command in commands {
            for option in command.command.options where option.takesValue {
                let keys = option.names.map { command.path + " " + $0 }
                if let choices = option.valueChoices {
                    lines.append("        \(patterns(keys))) COMPREPLY=($(compgen -P \"$prefix\" -W \(quoted(choices.joined(separator: " "))) -- \"$cur\")); return 0 ;;")
                } else {
                    valuesWithoutChoices += keys
                }
            }
        }
        if !valuesWithoutChoices.isEmpty {
            lines.append("        \(patterns(valuesWithoutChoices))) return 0 ;;")
        }
        lines.append("""
                    esac
                fi
                if [[ "$cur" == -* ]]; then
                    case "$command" in
            """)
        for command in commands {
            let names = command.command.options.flatMap(\.names) + ["-h", "--help"]
            lines.append("        \(patterns([command.path]))) COMPREPLY=($(compgen -W \(quoted(names.joined(separator: " "))) -- \"$cur\")) ;;")
        }
        lines.append("""
                    esac
                    return 0
                fi
                case "$command" in
            """)
        for command in commands {
            var words = command.command.subcommands.map(\.name)
            if command.path == root.name && !words.isEmpty { words.append("help") }
            words += command.command.positionals?.choices ?? []
            guard !words.isEmpty else { continue }
            lines.append("    \(patterns([command.path]))) COMPREPLY=($(compgen -W \(quoted(words.joined(separator: " "))) -- \"$cur\")) ;;")
        }
        lines.append("""
                esac
                return 0
            }
            complete -o default -F \(function) \(quoted(root.name))
            """)
        return lines.joined(separator: "\n") + "\n"
    }

    /// Every command of the tree with the words that name it ("certgate certs init"), the
    /// root first.
    private static func commands(_ command: Command, path: [String]) -> [(path: String, command: Command)] {
        [(path.joined(separator: " "), command)]
            + command.subcommands.flatMap { commands($0, path: path + [$0.name]) }
    }

    /// `"a"|"b"`: a case pattern matching each text exactly.
    private func patterns(_ texts: [String]) -> String {
        texts.map(quoted).joined(separator: "|")
    }

    /// The text as one shell word, taken literally.
    private func quoted(_ text: String) -> String {
        "'" + text.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "'\\''") + "'"
    }
}
