import CertgatePKI
import CertgateTestSupport
import Foundation
import Testing

/// The command line as a user meets it: swift-argument-parser's usage errors, help and
/// completion scripts, over certgate's own declarations.
@Suite struct CommandLineTests {
    @Test func mistakesExitWith64AndNameWhatWouldBeAccepted() throws {
        let subcommand = try runProcess(certgateBinary, ["serv"])
        #expect(subcommand.status == 64)
        #expect(subcommand.stderr.hasPrefix("Error: unknown subcommand \"serv\"; did you mean serve?\nUsage: certgate <subcommand>\n"),
                "\(subcommand.output)")
        let nothingClose = try runProcess(certgateBinary, ["zzz"])
        #expect(nothingClose.status == 64)
        #expect(nothingClose.stderr.hasPrefix("Error: unknown subcommand \"zzz\" (one of serve, validate, renew, status, inspect, certs, completion, version)"),
                "\(nothingClose.output)")
        let option = try runProcess(certgateBinary, ["serve", "--prot", "1"])
        #expect(option.status == 64)
        #expect(option.stderr.hasPrefix("Error: Unknown option '--prot'. Did you mean '--port'?\n"), "\(option.output)")
        #expect(option.stderr.contains("See 'certgate serve --help' for more information."), "\(option.output)")
        let port = try runProcess(certgateBinary, ["serve", "--port", "70000"])
        #expect(port.status == 64)
        #expect(port.stderr.contains("The value '70000' is invalid for '--port <port>'"), "\(port.output)")
        let bool = try runProcess(certgateBinary, ["serve", "--reconcile", "yes"])
        #expect(bool.status == 64)
        #expect(bool.stderr.contains("The value 'yes' is invalid for '--reconcile <bool>'"), "\(bool.output)")
        let output = try runProcess(certgateBinary, ["validate", "-f", "x.yaml", "--output", "xml"])
        #expect(output.status == 64)
        #expect(output.stderr.contains("Please provide one of 'text', 'json' or 'github'."), "\(output.output)")
        let missing = try runProcess(certgateBinary, ["validate"])
        #expect(missing.status == 64)
        #expect(missing.stderr.hasPrefix("Error: --filename is missing: name a manifest file, a directory of them, or - for standard input\n"
                                         + "Usage: certgate validate "), "the command's own checks name the command: \(missing.output)")
        let renew = try runProcess(certgateBinary, ["renew"])
        #expect(renew.status == 64)
        #expect(renew.stderr.hasPrefix("Error: name at least one Pki to renew\n"), "\(renew.output)")
    }

    @Test func helpListsEveryOptionWithItsDefaultAndTheToolItsSubcommands() throws {
        let serve = try runProcess(certgateBinary, ["serve", "--help"])
        #expect(serve.status == 0)
        let text = serve.stdout
        #expect(text.hasPrefix("OVERVIEW: Serve the webhook over HTTPS"), "\(text)")
        #expect(text.contains("\nCLUSTER AND RECONCILER:\n"), "\(text)")
        #expect(text.contains("  --port <port>           Port of the webhook server. (default: 8443)\n"), "\(text)")
        #expect(text.contains("  --kube-api-burst <count>"), "\(text)")
        #expect(text.split(whereSeparator: \.isWhitespace).joined(separator: " ").contains("Not given: no client-side limit when the API server reports API Priority and Fairness"), "\(text)")
        let unwrapped = text.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        #expect(unwrapped.contains("(values: trace, debug, info, notice, warning, error, critical; default: info)"), "\(text)")
        #expect(text.contains("--leader-elect-resource-namespace, --leader-election-namespace <leader-elect-resource-namespace>"), "\(text)")
        #expect(try runProcess(certgateBinary, ["help", "serve"]).stdout == text, "certgate help serve is certgate serve --help")

        let root = try runProcess(certgateBinary, [])
        #expect(root.status == 0, "\(root.output)")
        for name in ["serve", "validate", "renew", "certs", "completion", "version"] {
            #expect(root.stdout.contains("\n  \(name) "), "\(name) in \(root.stdout)")
        }
    }

    /// What documentation tools read: every option of serve with its default, as JSON.
    @Test func theHelpDumpDescribesEveryOption() throws {
        let dump = try runProcess(certgateBinary, ["serve", "--experimental-dump-help"])
        #expect(dump.status == 0, "\(dump.output)")
        let tool = try JSONSerialization.jsonObject(with: Data(dump.stdout.utf8)) as? [String: Any]
        let command = tool?["command"] as? [String: Any]
        let arguments = command?["arguments"] as? [[String: Any]] ?? []
        func option(_ name: String) -> [String: Any]? {
            arguments.first { ($0["names"] as? [[String: Any]])?.contains { $0["name"] as? String == name } == true }
        }
        #expect(option("kube-api-qps")?["isOptional"] as? Bool == true, "\(arguments.count) arguments")
        #expect((option("kube-api-qps")?["abstract"] as? String)?.contains("API Priority and Fairness") == true)
        #expect(option("idle-timeout")?["defaultValue"] as? String == "120s")
        #expect(option("idle-timeout")?["defaultValue"] as? String == "120s")
        #expect(option("log-level")?["allValues"] as? [String] == ["trace", "debug", "info", "notice", "warning", "error", "critical"])
        #expect(option("webhook-failure-policy")?["sectionTitle"] as? String == "Serving certificate and webhook registration")
    }

    /// Lines typed up to the cursor, and what each shell offers there.
    static let probes: [(line: String, offered: String)] = [
        ("certgate ", "serve validate renew status inspect certs completion version help"),
        ("certgate serve --log-level ", "trace debug info notice warning error critical"),
        ("certgate validate --output ", "text json github"),
        ("certgate serve --webhook-failure-policy ", "Fail Ignore"),
        ("certgate serve --reconcile ", "true false"),
        ("certgate renew --a", "--allow-insecure-kubeconfig"),
        ("certgate completion ", "bash zsh fish"),
    ]

    /// True when a shell offered every word expected and nothing else but the tool's help
    /// and version flags (bash lists them among the subcommands); in any order.
    static func offers(_ offered: String, _ expected: String) -> Bool {
        let got = Set(offered.split(separator: " ").map(String.init))
        let wanted = Set(expected.split(separator: " ").map(String.init))
        return wanted.isSubset(of: got) && got.subtracting(wanted).isSubset(of: ["-h", "--help", "--version"])
    }

    /// bash's programmable completion as readline calls it: COMP_LINE and COMP_POINT, the
    /// words, and the function `complete -p` names.
    @Test func bashCompletesSubcommandsOptionsAndTheirValues() throws {
        let program = """
            source <("$0" completion bash)
            function=$(complete -p certgate | sed 's/.* -F \\([^ ]*\\) .*/\\1/')
            while IFS= read -r COMP_LINE; do
                COMP_POINT=${#COMP_LINE}
                read -r -a COMP_WORDS <<< "$COMP_LINE"
                [[ "$COMP_LINE" == *" " ]] && COMP_WORDS+=("")
                COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); COMPREPLY=()
                "$function" certgate "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
                echo "${COMPREPLY[*]}"
            done
            """
        let input = Self.probes.map(\.line).joined(separator: "\n") + "\n"
        let result = try runProcess("bash", ["--norc", "--noprofile", "-c", program, certgateBinary], input: input, timeout: 60)
        #expect(result.stderr.isEmpty, "\(result.stderr)")
        let offered = result.stdout.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map { String($0) }
        #expect(offered.count == Self.probes.count, "\(result.output)")
        for (probe, got) in zip(Self.probes, offered) {
            #expect(Self.offers(got, probe.offered), "\(probe.line): \(got)")
        }
    }

    /// fish's own completion query, `complete -C`, on the script sourced as a user would.
    @Test func fishCompletesSubcommandsOptionsAndTheirValues() throws {
        let program = """
            certgate completion fish | source
            while read -l line
                echo (complete -C "$line" | string split -f1 \\t | string join " ")
            end
            """
        let binDirectory = URL(fileURLWithPath: certgateBinary).deletingLastPathComponent().path
        let input = Self.probes.map(\.line).joined(separator: "\n") + "\n"
        let result = try runProcess("/usr/bin/env", ["PATH=\(binDirectory):/usr/bin:/bin", "fish", "--no-config", "-c", program],
                                    input: input, timeout: 60)
        #expect(result.stderr.isEmpty, "\(result.stderr)")
        let offered = result.stdout.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map { String($0) }
        #expect(offered.count == Self.probes.count, "\(result.output)")
        for (probe, got) in zip(Self.probes, offered) {
            #expect(Self.offers(got, probe.offered), "\(probe.line): \(got)")
        }
    }

    /// zsh offers completions only inside its line editor: an interactive zsh on a
    /// pseudo-terminal (zsh/zpty) is typed each line and a key bound to complete-word, and a
    /// compadd wrapper prints what the script offered. The widget prints a marker once the
    /// completion is done, and the next keys wait for it: zsh skips completing when more
    /// input is already waiting.
    @Test func zshCompletesSubcommandsOptionsAndTheirValuesInItsLineEditor() throws {
        let directory = TemporaryDirectory()
        let script = try runProcess(certgateBinary, ["completion", "zsh"])
        try script.stdout.write(toFile: directory.file("_certgate"), atomically: true, encoding: .utf8)
        let binDirectory = URL(fileURLWithPath: certgateBinary).deletingLastPathComponent().path
        var program = """
            zmodload zsh/zpty
            zpty z zsh -f -i
            zpty -w z "PS1=''; bindkey -e; fpath=(\(directory.path) \\$fpath); autoload -U compinit; compinit -u -D; PATH=\(binDirectory):\\$PATH"
            zpty -w z 'compadd () { local -a hits; builtin compadd -O hits "$@"; (( $#hits )) && print -r -- "<<${hits[*]}>>" }'
            zpty -w z 'probe () { zle complete-word; print -r -- "@@""completed" }; zle -N probe; bindkey "^T" probe'
            zpty -w z "print -r -- @@\\$((100+0))"
            zpty -r z out "*@@100*"

            """
        for probe in Self.probes {
            program += """
                zpty -w -n z '\(probe.line)'$'\\x14'
                zpty -r z out "*@@completed*"
                zpty -w -n z $'\\C-u'
                print -r -- "== ${(j: :)${(M)${(f)out}:#*<<*>>*}}"

                """
        }
        program += "zpty -d z\n"
        let result = try runProcess("zsh", ["-f", "-c", program], timeout: 60)
        let offered = result.stdout.split(separator: "\n").filter { $0.hasPrefix("== ") }.map { line in
            // The first offer of each completion: zsh's completion may call compadd more than once.
            line.firstMatch(of: /<<([^>]*)>>/).map { String($0.1) } ?? ""
        }
        #expect(offered.count == Self.probes.count, "\(result.output)")
        for (probe, got) in zip(Self.probes, offered) {
            #expect(Self.offers(got, probe.offered), "\(probe.line): \(got)")
        }
    }
}
