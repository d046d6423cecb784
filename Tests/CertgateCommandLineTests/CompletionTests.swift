import CertgateCommandLine
import CertgateTestSupport
import Foundation
import Testing

/// The completion script run by the real shells: bash as its programmable completion calls
/// it (COMP_WORDS split as readline splits, "=" a word of its own), zsh through bashcompinit.
@Suite struct CompletionTests {
    /// What the completion function offers for each command line, the last word the one
    /// being completed.
    private func offers(_ shell: Shell, _ lines: [[String]]) throws -> [String] {
        let directory = TemporaryDirectory()
        let script = directory.file("completion")
        try CompletionScript(root: tool.root, shell: shell).text.write(toFile: script, atomically: true, encoding: .utf8)
        let calls = lines.map { words in
            let quoted = words.map { "'\($0)'" }.joined(separator: " ")
            switch shell {
            case .bash: return "COMP_WORDS=(\(quoted)); COMP_CWORD=\(words.count - 1); COMPREPLY=(); _certgate_complete; echo \"${COMPREPLY[*]}\""
            case .zsh: return "COMP_WORDS=(\(quoted)); COMP_CWORD=\(words.count - 1); echo ${(f)\"$(compgen -F _certgate_complete -- '')\"}"
            }
        }
        let program: String
        let executable: String
        switch shell {
        case .bash:
            executable = "bash"
            program = (["source \(script)", "complete -p certgate"] + calls).joined(separator: "\n")
        case .zsh:
            executable = "zsh"
            program = (["autoload -U compinit && compinit -u -d \(directory.file("zcompdump"))", "source \(script)"] + calls).joined(separator: "\n")
        }
        let result = try runProcess(executable, shell == .zsh ? ["-f", "-c", program] : ["--norc", "--noprofile", "-c", program],
                                    timeout: 30)
        #expect(result.stderr.isEmpty, "\(result.stderr)")
        return result.stdout.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
    }

    @Test func bashOffersSubcommandsOptionsAndTheValuesTheirTypesName() throws {
        let lines: [[String]] = [
            ["certgate", ""],
            ["certgate", "se"],
            ["certgate", "serve", "--o"],
            ["certgate", "serve", "--output", ""],
            ["certgate", "serve", "--output", "="],
            ["certgate", "serve", "--output", "=", "j"],
            ["certgate", "serve", "--output=g"],
            ["certgate", "serve", "--reconcile", "f"],
            ["certgate", "serve", "--policy", ""],
            ["certgate", "serve", "--policy", "certs", "--k"],
            ["certgate", "serve", "-n", ""],
            ["certgate", "certs", ""],
            ["certgate", "certs", "init", "-"],
            ["certgate", "help", "c"],
            ["certgate", "completion", ""],
        ]
        let offered = try offers(.bash, lines)
        #expect(offered == [
            "complete -o default -F _certgate_complete certgate",
            "serve certs completion help",
            "serve",
            "--output",
            "text json github",
            "text json github",
            "json",
            "--output=github",
            "false",
            "",
            "--kubeconfig",
            "",
            "init",
            "-h --help",
            "certs completion",
            "bash zsh",
        ], "an empty offer leaves it to the shell's file names")
    }

    /// zsh filters what is offered itself (its compgen ignores the word), so each case here
    /// shows all the candidates.
    @Test func zshRunsTheSameFunctionThroughBashcompinit() throws {
        let offered = try offers(.zsh, [
            ["certgate", "serve", "--output", ""],
            ["certgate", "serve", "--output=g"],
            ["certgate", "certs", "init", "--d"],
            ["certgate", "completion", ""],
        ])
        #expect(offered == [
            "text json github",
            "--output=text --output=json --output=github",
            "-h --help",
            "bash zsh",
        ])
    }
}
