import CertgateYAML
import Testing

@Suite struct YAMLReadingTests {
    @Test func readsMappingsInOrderWithSequencesAndScalars() throws {
        let root = try #require(try YAML.document(in: """
            # a policy-shaped document
            serviceNames: [a, "b"]
            namespaces:
              app1:
              - app1
              - app2
            empty: {}
            """))
        #expect(root.mapping?.map { $0.key.string } == ["serviceNames", "namespaces", "empty"])
        #expect(root["serviceNames"]?.sequence?.map(\.string) == ["a", "b"])
        #expect(root["namespaces"]?["app1"]?.sequence?.map(\.string) == ["app1", "app2"])
        #expect(root["empty"]?.mapping?.isEmpty == true)
        #expect(root["missing"] == nil)
        #expect(root["namespaces"]?.mark == YAMLMark(line: 4, column: 3), "where the value starts")
    }

    @Test func anEmptyTextHasNoDocumentAndAnEmptyDocumentIsNull() throws {
        #expect(try YAML.document(in: "") == nil)
        #expect(try YAML.document(in: "# only a comment\n") == nil)
        let documents = try YAML.documents(in: "---\n---\na: 1\n")
        #expect(documents.count == 2)
        #expect(documents[0].value == .null)
        #expect(documents[1]["a"]?.value == .int(1))
    }

    @Test func aSingleDocumentTextRefusesASecondOne() {
        #expect { try YAML.document(in: "a: 1\n---\nb: 2\n") } throws: {
            "\($0)" == "expected a single document, but found another document at line 3, column 1"
        }
    }

    @Test(arguments: [
        ("serviceNames: [a\n", "did not find expected ',' or ']' at line 2, column 1"),
        ("a: b: c\n", "mapping values are not allowed in this context at line 1, column 5"),
        ("a:\n  - x\n b: y\n", "did not find expected key at line 3, column 2"),
        ("a: *nowhere\n", "unknown alias \"nowhere\" at line 1, column 4"),
        ("a: 1\nb: 2\na: 3\n", "duplicated key \"a\" at line 3, column 1"),
        ("a: \"\u{1}\"\n", "control characters are not allowed at byte 4"),
    ])
    func brokenYAMLSaysWhatAndWhere(_ text: String, _ message: String) {
        #expect { try YAML.documents(in: text) } throws: { "\($0)" == message }
    }

    @Test func aliasesAreExpandedToTheAnchoredNode() throws {
        let root = try #require(try YAML.document(in: "base: &names [a, b]\ncopy: *names\n"))
        #expect(root["copy"]?.sequence?.map(\.string) == ["a", "b"])
    }

    @Test func mergeKeysAddWhatTheMappingDoesNotSet() throws {
        let root = try #require(try YAML.document(in: """
            base: &base {size: 256, algorithm: ECDSA}
            other: &other {size: 4096, rotation: Always}
            one: {<<: *base, size: 384}
            both: {<<: [*base, *other], encoding: PKCS8}
            quoted: {"<<": *base}
            """))
        #expect(root["one"]?.mapping?.map { "\($0.key.string!)=\($0.value.string!)" } == ["size=384", "algorithm=ECDSA"])
        #expect(root["both"]?.mapping?.map { "\($0.key.string!)=\($0.value.string!)" }
                == ["encoding=PKCS8", "size=256", "algorithm=ECDSA", "rotation=Always"], "the earlier mapping of the list wins")
        #expect(root["quoted"]?["<<"]?.mapping != nil, "a quoted << is an ordinary key")
        #expect { try YAML.documents(in: "a: {<<: [x]}\n") } throws: {
            "\($0)" == "a merge key (<<) takes a mapping or a list of mappings at line 1, column 10"
        }
    }

    @Test func aBillionLaughsDocumentIsRefusedNotBuilt() {
        var text = "l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n"
        for level in 1...7 {
            text += "l\(level): &l\(level) [" + Array(repeating: "*l\(level - 1)", count: 10).joined(separator: ", ") + "]\n"
        }
        #expect { try YAML.documents(in: text) } throws: {
            "\($0)".hasPrefix("more than \(YAML.maximumNodes) nodes once aliases are expanded")
        }
    }

    @Test func nestingIsBounded() throws {
        let deep = String(repeating: "[", count: YAML.maximumDepth + 1) + String(repeating: "]", count: YAML.maximumDepth + 1)
        #expect { try YAML.documents(in: deep) } throws: { "\($0)".hasPrefix("nested deeper than \(YAML.maximumDepth) levels") }
        let allowed = String(repeating: "[", count: YAML.maximumDepth) + String(repeating: "]", count: YAML.maximumDepth)
        #expect(try YAML.documents(in: allowed).count == 1)
    }
}

@Suite struct YAMLScalarTests {
    /// Plain scalars resolve as kubectl resolves them (go-yaml v2, YAML 1.1).
    @Test(arguments: [
        ("256", YAMLValue.int(256)), ("-17", .int(-17)), ("+3", .int(3)), ("0x1F", .int(31)), ("0o17", .int(15)),
        ("017", .int(15)), ("0b101", .int(5)), ("1_000", .int(1000)), ("9223372036854775807", .int(Int.max)),
        ("-9223372036854775808", .int(Int.min)), ("9223372036854775808", .float(9223372036854775808)),
        ("1.5", .float(1.5)), ("-2e3", .float(-2000)), (".5", .float(0.5)), ("08", .float(8)),
        ("yes", .bool(true)), ("On", .bool(true)), ("y", .bool(true)), ("FALSE", .bool(false)), ("off", .bool(false)),
        ("~", .null), ("null", .null), ("", .null),
        ("2160h", .string("2160h")), ("_1", .string("_1")), ("1.2.3", .string("1.2.3")), ("0x", .string("0x")),
        ("inf", .string("inf")), ("nan", .string("nan")), ("1e5e5", .string("1e5e5")), ("app1.svc", .string("app1.svc")),
    ])
    func plainScalars(_ text: String, _ expected: YAMLValue) throws {
        let node = try #require(try YAML.document(in: "v: \(text)\n")?["v"])
        #expect(node.value == expected)
    }

    @Test func infinityAndNaNUseYAMLSpellings() throws {
        let root = try #require(try YAML.document(in: "a: .inf\nb: -.Inf\nc: .nan\n"))
        #expect(root["a"]?.value == .float(.infinity))
        #expect(root["b"]?.value == .float(-.infinity))
        guard case .float(let nan) = root["c"]?.value else { Issue.record("not a float"); return }
        #expect(nan.isNaN)
    }

    @Test func quotedAndBlockScalarsStayStrings() throws {
        let root = try #require(try YAML.document(in: "a: \"256\"\nb: 'true'\nc: |\n  42\nd: \"\"\n"))
        #expect(root["a"]?.value == .string("256"))
        #expect(root["b"]?.value == .string("true"))
        #expect(root["c"]?.value == .string("42\n"))
        #expect(root["d"]?.value == .string(""))
    }

    @Test func explicitTagsWin() throws {
        let root = try #require(try YAML.document(in: "a: !!str 256\nb: !!int \"12\"\nc: !!float 3\nd: !!null x\ne: !!bool \"no\"\nf: !custom 1\n"))
        #expect(root["a"]?.value == .string("256"))
        #expect(root["b"]?.value == .int(12))
        #expect(root["c"]?.value == .float(3))
        #expect(root["d"]?.value == .null)
        #expect(root["e"]?.value == .bool(false))
        #expect(root["f"]?.value == .string("1"))
        #expect(root["a"]?.tag == "tag:yaml.org,2002:str")
    }

    @Test func collectionsHaveNoScalarValue() throws {
        let root = try #require(try YAML.document(in: "a: [1]\n"))
        #expect(root.value == nil)
        #expect(root["a"]?.value == nil)
        #expect(root["a"]?.string == nil)
    }
}
