import CertgateCommandLine
import Testing

private enum Flags {
    static let port = Option<UInt16>("--port", default: 8443, help: "Port of the server.")
    static let policy = Option<String>("--policy", help: "Policy YAML.")
    static let namespace = Option<String>("--namespace", aliases: ["--ns"], short: "n", default: "default", help: "Namespace.")
    static let filename = Option<String>("--filename", short: "f", repeatable: true, help: "A file. Repeatable.")
    static let reconcile = Option<Bool>("--reconcile", default: true, help: "Run the reconciler.")
    static let output = Option<Format>("--output", default: .text, help: "How findings are printed.")
    static let force = Flag("--force", help: "Replace existing files.")
}

private enum Format: String, ArgumentValue, CaseIterable {
    case text, json, github
}

private let serve = Command("serve", abstract: "Serve.", options: [
    OptionGroup([Flags.port, Flags.policy, Flags.namespace, Flags.filename, Flags.reconcile, Flags.output, Flags.force]),
    OptionGroup("Cluster", [Option<String>("--kubeconfig", help: "Path to a kubeconfig.")]),
], positionals: Positionals("names", help: "Names.")) { _ in }

let tool = Tool(Command("certgate", abstract: "The tool.", subcommands: [
    serve,
    Command("certs", abstract: "Certificates.", subcommands: [Command("init", abstract: "Write them.") { _ in throw ExitStatus(3) }]),
]))

@Suite struct CommandLineTests {
    @Test func readsLongShortAndEqualsFormsWithDefaultsForWhatIsNotGiven() throws {
        let parsed = try ParsedArguments.parse(["--port=9443", "-n", "app1", "--policy", "-", "--force", "--reconcile=false"], for: serve)
        #expect(try parsed.value(Flags.port) == 9443)
        #expect(try parsed.value(Flags.namespace) == "app1")
        #expect(try parsed.valueIfGiven(Flags.policy) == "-", "a value may be a lone dash (standard input)")
        #expect(parsed.isSet(Flags.force))
        #expect(try parsed.value(Flags.reconcile) == false)
        #expect(try parsed.value(Flags.output) == .text)

        let defaults = try ParsedArguments.parse([], for: serve)
        #expect(try defaults.value(Flags.port) == 8443)
        #expect(try defaults.valueIfGiven(Flags.policy) == nil)
        #expect(!defaults.isSet(Flags.force))
        #expect(try defaults.value(Flags.reconcile) == true)
    }

    @Test func theLastValueCountsUnlessTheOptionRepeats() throws {
        let parsed = try ParsedArguments.parse(["--ns", "a", "-n", "b", "-f", "one.yaml", "--filename=two.yaml", "name1", "--", "--name2"],
                                               for: serve)
        #expect(try parsed.value(Flags.namespace) == "b", "an alias and the short name are the same option")
        #expect(try parsed.values(Flags.filename) == ["one.yaml", "two.yaml"])
        #expect(parsed.positionals == ["name1", "--name2"], "after --, arguments are positional even with a dash")
    }

    @Test func refusesWhatItCannotReadAndSaysWhichOptionAndWhatWouldDo() throws {
        func message(_ arguments: [String]) -> String? {
            do {
                let parsed = try ParsedArguments.parse(arguments, for: serve)
                _ = try parsed.value(Flags.port)
                _ = try parsed.value(Flags.reconcile)
                _ = try parsed.value(Flags.output)
                return nil
            } catch {
                return (error as? UsageError)?.description
            }
        }
        #expect(message(["--prot", "1"]) == "unknown option --prot; did you mean --port?")
        #expect(message(["--zzz"]) == "unknown option --zzz")
        #expect(message(["--port"]) == "--port needs a value")
        #expect(message(["--port", "70000"]) == "--port: \"70000\" is not an integer from 0 to 65535")
        #expect(message(["--reconcile", "yes"]) == "--reconcile: \"yes\" is not true or false")
        #expect(message(["--output", "xml"]) == "--output: \"xml\" is not text, json or github")
        #expect(message(["--force=true"]) == "--force takes no value")
        let noPositionals = Command("init", abstract: "Write them.", options: [OptionGroup([Flags.force])]) { _ in }
        #expect(throws: UsageError("unexpected argument \"extra\"")) { try ParsedArguments.parse(["extra"], for: noPositionals) }
    }

    @Test func usageErrorsExitWith64AndNameTheCommandsHelp() {
        guard case .usageError(let text) = tool.run(["serve", "--prot", "1"]) else {
            Issue.record("a misspelt option is a usage error")
            return
        }
        #expect(text.hasPrefix("Error: unknown option --prot; did you mean --port?\nUsage: certgate serve [<options>] <names> ...\n"), "\(text)")
        #expect(text.contains("See 'certgate serve --help'"))
        guard case .usageError(let subcommand) = tool.run(["serv"]) else {
            Issue.record("a misspelt subcommand is a usage error")
            return
        }
        #expect(subcommand.hasPrefix("Error: unknown subcommand \"serv\"; did you mean serve?"), "\(subcommand)")
        #expect(tool.run(["certs", "init"]) == .exit(3), "a command's own exit status passes through")
        #expect(tool.run(["serve", "name"]) == .ran)
    }

    @Test func helpListsEveryOptionWithItsDefaultUnderItsGroup() {
        guard case .help(let text) = tool.run(["serve", "--help"]) else {
            Issue.record("--help prints help")
            return
        }
        #expect(text.hasPrefix("OVERVIEW: Serve.\n\nUSAGE: certgate serve [<options>] <names> ...\n"), "\(text)")
        #expect(text.contains("  --port <port>                 Port of the server. (default: 8443)\n"), "\(text)")
        #expect(text.contains("  -n, --namespace, --ns <namespace>\n"), "\(text)")
        #expect(text.contains("  --output <output>             How findings are printed. (default: text)\n"), "\(text)")
        #expect(text.contains("\nCLUSTER:\n  --kubeconfig <kubeconfig>     Path to a kubeconfig.\n"), "\(text)")
        #expect(tool.run(["help", "serve"]) == .help(text))
        #expect(tool.run(["serve", "--", "--help"]) == .ran, "after --, --help is an argument")
        guard case .help(let root) = tool.run([]) else {
            Issue.record("no subcommand prints the tool's help")
            return
        }
        #expect(root.contains("SUBCOMMANDS:\n  serve                         Serve.\n  certs                         Certificates.\n"), "\(root)")
    }
}
