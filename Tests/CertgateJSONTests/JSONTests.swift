import CertgateJSON
import Foundation
import Testing

let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../Fixtures/apiserver-1.28").standardized.path

/// Pulls a few fields out of an AdmissionReview the way the webhook will.
func summary(_ document: [UInt8]) throws -> [String: String] {
    try JSONReader.read(document) { reader in
        var found: [String: String] = [:]
        try reader.readObject { reader, key in
            if key == "apiVersion" { found["apiVersion"] = try reader.readString() }
            else if key == "request" {
                try reader.readObject { reader, key in
                    if key == "uid" { found["uid"] = try reader.readString() }
                    else if key == "operation" { found["operation"] = try reader.readString() }
                    else if key == "dryRun" { found["dryRun"] = String(try reader.readBool()) }
                    else if key == "object" {
                        if try reader.readNull() { return }
                        try reader.readObject { reader, key in
                            if key == "metadata" {
                                try reader.readObject { reader, key in
                                    if key == "generation" { found["generation"] = String(try reader.readInt()) }
                                    else if key == "name" { found["name"] = try reader.readString() }
                                    else { try reader.skipValue() }
                                }
                            } else if key == "spec" {
                                try reader.readObject { reader, key in
                                    if key == "serviceName" { found["serviceName"] = try reader.readString() }
                                    else if key == "dnsNames" { found["dnsNames"] = try reader.readStringArray()?.joined(separator: ",") }
                                    else { try reader.skipValue() }
                                }
                            } else { try reader.skipValue() }
                        }
                    } else { try reader.skipValue() }
                }
            } else { try reader.skipValue() }
        }
        return found
    }
}

/// Skips a value through readObject and readArray calling back: the reference whose errors
/// and offsets ``JSONReader/skipValue()`` must match.
func skipByCallbacks(_ reader: inout JSONReader) throws {
    switch try reader.peek() {
    case .object: try reader.readObject { reader, _ in try skipByCallbacks(&reader) }
    case .array: try reader.readArray { reader, _ in try skipByCallbacks(&reader) }
    case .string: _ = try reader.readString()
    case .number: _ = try reader.readDouble()
    case .bool: _ = try reader.readBool()
    case .null: guard try reader.readNull() else { throw JSONError(offset: reader.offset, "expected null") }
    }
}

/// `document` with one to four bytes replaced, removed or inserted, drawn from JSON's
/// structural characters and a few bytes that are never valid in it.
func mutated(_ document: [UInt8], _ generator: inout SplitMix64) -> [UInt8] {
    let interesting: [UInt8] = Array("{}[]\",:\\0123456789eE+-.tfnu \n".utf8) + [0x00, 0x1F, 0xC3, 0xFF]
    var document = document
    for _ in 0..<Int(generator.next() % 4 + 1) {
        let position = Int(generator.next() % UInt64(document.count))
        switch generator.next() % 3 {
        case 0: document[position] = interesting[Int(generator.next() % UInt64(interesting.count))]
        case 1: document.remove(at: position)
        default: document.insert(interesting[Int(generator.next() % UInt64(interesting.count))], at: position)
        }
    }
    return document
}

/// The outcome of reading a whole document with `body`: nil, or the error it met.
func outcome(_ document: [UInt8], _ body: (inout JSONReader) throws -> Void) -> JSONError? {
    do {
        try JSONReader.read(document, body)
        return nil
    } catch let error as JSONError {
        return error
    } catch {
        return JSONError(offset: -1, "\(error)")
    }
}

@Suite struct JSONReaderTests {
    @Test func readsWhatItNeedsFromARecordedAdmissionReview() throws {
        let body = Array(try Data(contentsOf: URL(fileURLWithPath: "\(fixtures)/admissionreview-create.json")))
        let found = try summary(body)
        #expect(found["apiVersion"] == "admission.k8s.io/v1")
        #expect(found["operation"] == "CREATE")
        #expect(found["dryRun"] == "false")
        #expect(found["name"] == "app1-pki")
        #expect(found["generation"] == "1")
        #expect(found["serviceName"] == "app1")
        #expect(found["uid"]?.count == 36)
        let delete = try summary(Array(try Data(contentsOf: URL(fileURLWithPath: "\(fixtures)/admissionreview-delete.json"))))
        #expect(delete["operation"] == "DELETE")
        #expect(delete["serviceName"] == nil, "object is null on DELETE")
    }

    @Test func decodesEscapesIncludingSurrogatePairs() throws {
        let text = #"["a\"b\\c\/d", "\u00e9\u4e2d", "\ud83d\ude00", "tab\tnl\n", "plain é"]"#
        let values = try JSONReader.read(Array(text.utf8)) { try $0.readStringArray() }
        #expect(values == ["a\"b\\c/d", "é中", "😀", "tab\tnl\n", "plain é"])
    }

    /// Strings are scanned eight bytes at a time: a quote, backslash or control character
    /// is found at every position within and across those words.
    @Test func findsWhatEndsOrEscapesAStringAtEveryOffset() throws {
        for length in 0..<40 {
            let plain = String((0..<length).map { Character(Unicode.Scalar(UInt8(ascii: "a") + UInt8($0 % 26))) })
            #expect(try JSONReader.read(Array("\"\(plain)\"".utf8)) { try $0.readString() } == plain)
            for position in 0...length {
                var escaped = plain
                escaped.insert(contentsOf: #"\""#, at: escaped.index(escaped.startIndex, offsetBy: position))
                var expected = plain
                expected.insert("\"", at: expected.index(expected.startIndex, offsetBy: position))
                #expect(try JSONReader.read(Array("\"\(escaped)\"".utf8)) { try $0.readString() } == expected)

                var control = Array("\"\(plain)\"".utf8)
                control.insert(0x1F, at: 1 + position)
                #expect(throws: JSONError(offset: 1 + position, "control character in a string")) {
                    try JSONReader.read(control) { try $0.skipValue() }
                }
                let unterminated = Array("\"\(plain)".utf8) + Array(repeating: UInt8(0xC3), count: position)
                #expect(throws: JSONError(offset: 0, "unterminated string")) { try JSONReader.read(unterminated) { try $0.skipValue() } }
            }
        }
    }

    /// A common value is handed out as the literal; an uncommon or escaped one is read as
    /// readString reads it, and a value that is not a string is refused the same way.
    @Test func readsCommonValuesAsTheirLiterals() throws {
        let common = ["CREATE", "UPDATE", "admission.k8s.io/v1"]
        let document = #"["UPDATE", "admission.k8s.io/v1", "CREAT", "CREATEE", "CRE\u0041TE", "", "é"]"#
        let values = try JSONReader.read(Array(document.utf8)) { reader in
            var values: [String] = []
            try reader.readArray { reader, _ in values.append(try reader.readString(usuallyOneOf: common)) }
            return values
        }
        #expect(values == ["UPDATE", "admission.k8s.io/v1", "CREAT", "CREATEE", "CREATE", "", "é"])
        #expect(throws: JSONError(offset: 1, "expected a string")) {
            try JSONReader.read(Array("[7]".utf8)) { reader in try reader.readArray { reader, _ in _ = try reader.readString(usuallyOneOf: common) } }
        }
    }

    @Test func matchesEscapedKeys() throws {
        let value = try JSONReader.read(Array(#"{"u\u0069d": 7}"#.utf8)) { reader in
            var uid = 0
            try reader.readObject { reader, key in
                #expect(key == "uid")
                uid = try reader.readInt()
            }
            return uid
        }
        #expect(value == 7)
    }

    @Test func readsNumbersAndRefusesFractionsWhereIntegersAreExpected() throws {
        #expect(try JSONReader.read(Array("-42".utf8)) { try $0.readInt() } == -42)
        #expect(try JSONReader.read(Array("2.5e3".utf8)) { try $0.readDouble() } == 2500)
        #expect(throws: JSONError(offset: 0, "expected an integer")) { try JSONReader.read(Array("1.5".utf8)) { try $0.readInt() } }
        #expect(throws: JSONError(offset: 0, "integer out of range")) {
            try JSONReader.read(Array("99999999999999999999".utf8)) { try $0.readInt() }
        }
    }

    @Test(arguments: [
        ("{\"a\":1,}", JSONError(offset: 7, "expected a member name")),
        ("{\"a\" 1}", JSONError(offset: 5, "expected ':' after a member name")),
        ("[1 2]", JSONError(offset: 3, "expected ',' or ']' in an array")),
        ("\"abc", JSONError(offset: 0, "unterminated string")),
        ("\"a\u{01}b\"", JSONError(offset: 2, "control character in a string")),
        ("\"\\x\"", JSONError(offset: 1, "invalid escape \\'x'")),
        ("\"\\ud83d\"", JSONError(offset: 7, "unpaired surrogate in \\u escape")),
        // A string whose first escapes are of one character is still checked past them.
        ("\"\\\"\\x\"", JSONError(offset: 3, "invalid escape \\'x'")),
        ("\"\\n\\uZZZZ\"", JSONError(offset: 5, "invalid \\u escape")),
        ("[\"\\t\", \"\\/\\ud800\"]", JSONError(offset: 16, "unpaired surrogate in \\u escape")),
        ("{} x", JSONError(offset: 3, "unexpected data after the document")),
        ("", JSONError(offset: 0, "unexpected end of document")),
        ("tru", JSONError(offset: 0, "expected true or false")),
        ("[nul]", JSONError(offset: 1, "expected null")),
        ("01", JSONError(offset: 1, "unexpected data after the document")),
        ("-", JSONError(offset: 0, "expected a number")),
    ])
    func malformedDocumentsAreRefusedWithTheirOffset(_ text: String, _ expected: JSONError) {
        #expect(throws: expected) { try JSONReader.read(Array(text.utf8)) { try $0.skipValue() } }
    }

    @Test func nestingIsBounded() {
        let deep = String(repeating: "[", count: 200) + String(repeating: "]", count: 200)
        #expect(throws: JSONError(offset: 129, "nested deeper than 128 levels")) {
            try JSONReader.read(Array(deep.utf8)) { try $0.skipValue() }
        }
    }

    @Test func aValueTheCallerForgetsToReadIsAnErrorNotAnInfiniteLoop() {
        #expect(throws: JSONError.self) {
            try JSONReader.read(Array(#"{"a": 1}"#.utf8)) { reader in try reader.readObject { _, _ in } }
        }
    }

    /// skipValue walks containers with its own loop: on recorded reviews and 3,000 mutations
    /// of one it accepts and refuses exactly what reading everything does, at the same offset.
    @Test func skippingAgreesWithReadingEverything() throws {
        var documents: [[UInt8]] = []
        for name in ["admissionreview-create.json", "admissionreview-update.json", "admissionreview-delete.json"] {
            documents.append(Array(try Data(contentsOf: URL(fileURLWithPath: "\(fixtures)/\(name)"))))
        }
        var generator = SplitMix64(seed: 0x5C1F)
        for _ in 0..<3000 {
            let original = documents[Int(generator.next() % 3)]
            documents.append(mutated(original, &generator))
        }
        documents += [Array((String(repeating: "[{\"a\":", count: 64) + "1" + String(repeating: "}]", count: 64)).utf8),
                      Array((String(repeating: "[{\"a\":", count: 65) + "1" + String(repeating: "}]", count: 65)).utf8)]
        var refused = 0
        for document in documents {
            let skipped = outcome(document) { try $0.skipValue() }
            let read = outcome(document) { try skipByCallbacks(&$0) }
            #expect(skipped == read, "\(String(decoding: document, as: UTF8.self))")
            if skipped != nil { refused += 1 }
        }
        #expect(refused > 100 && refused < documents.count - 100, "mutations both keep and break documents (\(refused) refused)")
    }

    /// Bounded mutation fuzz: every mutated AdmissionReview either reads or throws JSONError.
    @Test func mutatedDocumentsNeverCrash() throws {
        let original = Array(try Data(contentsOf: URL(fileURLWithPath: "\(fixtures)/admissionreview-update.json")))
        var generator = SplitMix64(seed: 0x5EED)
        var accepted = 0
        for _ in 0..<3000 {
            let document = mutated(original, &generator)
            do {
                _ = try summary(document)
                _ = try JSONReader.read(document) { try $0.skipValue() }
                accepted += 1
            } catch is JSONError {
            }
        }
        #expect(accepted > 0 && accepted < 3000, "mutations both keep and break documents (\(accepted) kept)")
    }
}

@Suite struct JSONTextTests {
    /// The answer writer sizes its one allocation by a first pass: text that is all control
    /// characters (six bytes each once escaped) and the widest integers still fit, and what
    /// is written is what JSONWriter writes for the same values.
    @Test func writesWhatJSONWriterWritesIntoTheSpaceItMeasured() throws {
        let controls = String(decoding: (0..<0x20).map { UInt8($0) } + Array("\"\\".utf8), as: UTF8.self)
        let numbers = [0, 7, -1, 403, Int.max, Int.min]
        let written = [UInt8](jsonText: { text in
            text.literal(#"{"text":"#)
            text.quoted(controls)
            text.literal(#","bytes":"#)
            text.quoted(utf8: Array("é \u{1} \"".utf8))
            text.literal(#","numbers":["#)
            for (index, number) in numbers.enumerated() {
                if index > 0 { text.literal(",") }
                text.int(number)
            }
            text.literal(#"],"yes":"#)
            text.bool(true)
            text.literal(#","no":"#)
            text.bool(false)
            text.literal("}")
        })
        var writer = JSONWriter()
        writer.object { object in
            object.member("text", string: controls)
            object.member("bytes", string: "é \u{1} \"")
            object.key("numbers")
            object.array { array in for number in numbers { array.int(number) } }
            object.member("yes", bool: true)
            object.member("no", bool: false)
        }
        #expect(String(decoding: written, as: UTF8.self) == String(decoding: writer.bytes, as: UTF8.self))
        #expect(written.capacity >= JSONText.escapedBound(controls.utf8.count))
    }
}

@Suite struct JSONWriterTests {
    @Test func writesCompactJSONThatFoundationReadsBack() throws {
        var writer = JSONWriter()
        writer.object { object in
            object.member("apiVersion", string: "admission.k8s.io/v1")
            object.key("response")
            object.object { response in
                response.member("uid", string: "705ab4f5")
                response.member("allowed", bool: false)
                response.key("status")
                response.object { status in
                    status.member("code", int: 403)
                    status.member("message", string: "spec.serviceName: \"appp1\" is not allowed\nsecond\tline \u{01} é")
                }
                response.member("warnings", strings: ["a", "b"])
                response.key("none")
                response.null()
            }
        }
        let text = String(decoding: writer.bytes, as: UTF8.self)
        #expect(text.hasPrefix(#"{"apiVersion":"admission.k8s.io/v1","response":{"uid":"705ab4f5","allowed":false,"status":{"code":403,"#))
        #expect(text.contains(#""message":"spec.serviceName: \"appp1\" is not allowed\nsecond\tline \u0001 é""#))
        let parsed = try JSONSerialization.jsonObject(with: Data(writer.bytes)) as! [String: Any]
        let response = parsed["response"] as! [String: Any]
        #expect((response["status"] as! [String: Any])["message"] as? String == "spec.serviceName: \"appp1\" is not allowed\nsecond\tline \u{01} é")
        #expect(response["warnings"] as? [String] == ["a", "b"])
        #expect(response["none"] is NSNull)
    }

    /// Every ASCII character, escaped or copied, at the start, middle and end of a string,
    /// reads back as it was; control characters take the \u00XX form with lower-case hex.
    /// The writer passes eight plain bytes at a time: a character to escape is found at
    /// every offset within and across those words.
    @Test func escapesAtEveryOffsetRoundTrip() throws {
        for special in ["\"", "\\", "\n", "\u{1}", "é"] {
            for length in 0..<24 {
                for position in 0...length {
                    var text = String(repeating: "m", count: length)
                    text.insert(contentsOf: special, at: text.index(text.startIndex, offsetBy: position))
                    var writer = JSONWriter()
                    writer.array { $0.string(text) }
                    let parsed = try JSONSerialization.jsonObject(with: Data(writer.bytes)) as? [String]
                    #expect(parsed == [text], "\(special.unicodeScalars.first!.value) at \(position) of \(length)")
                    let written = [UInt8](jsonText: { $0.literal("["); $0.quoted(text); $0.literal("]") })
                    #expect(written == writer.bytes, "JSONText: \(special.unicodeScalars.first!.value) at \(position) of \(length)")
                }
            }
        }
    }

    @Test func everyASCIICharacterRoundTrips() throws {
        for scalar in (0..<0x80).compactMap(Unicode.Scalar.init) {
            let text = "\(scalar)a\(scalar)é\(scalar)"
            var writer = JSONWriter()
            writer.array { $0.string(text) }
            let parsed = try JSONSerialization.jsonObject(with: Data(writer.bytes)) as? [String]
            #expect(parsed == [text], "U+\(String(scalar.value, radix: 16))")
        }
        var writer = JSONWriter()
        writer.string("\u{1f}")
        #expect(String(decoding: writer.bytes, as: UTF8.self) == #""\u001f""#)
    }
}

/// A small deterministic generator, so the fuzz test fails the same way every time.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite struct StringSearchTests {
    @Test func rangeOfFirstFindsTheFirstOccurrenceAsUTF8() {
        let text = "état: a: b"
        let range = text.rangeOfFirst(": ")
        #expect(range.map { String(text[..<$0.lowerBound]) } == "état")
        #expect(range.map { String(text[$0.upperBound...]) } == "a: b")
        let repeated = "aaab"
        #expect(repeated.rangeOfFirst("aab").map { repeated.utf8.distance(from: repeated.startIndex, to: $0.lowerBound) } == 1,
                "a partial match does not hide the match that overlaps it")
        #expect("abc".rangeOfFirst("abcd") == nil)
        #expect("abc".rangeOfFirst("") == "abc".startIndex..<"abc".startIndex)
    }
}
