import CertgateJSON
import Testing

private struct Object: Codable, Equatable {
    struct Metadata: Codable, Equatable {
        var name: String
        var labels: [String: String]?
        var generation: Int64?
    }

    var kind: String
    var metadata: Metadata
    var replicas: Int?
    var ratio: Double?
    var ready: Bool
    var tags: [String]
    var nested: [[Int]]?
}

/// Written by hand the ways synthesized conformances never are.
private struct Handwritten: Codable, Equatable {
    var value: Int

    enum CodingKeys: String, CodingKey { case value, nested }
    enum Inner: String, CodingKey { case x }

    init(value: Int) { self.value = value }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        value = try container.nestedContainer(keyedBy: Inner.self, forKey: .nested).decode(Int.self, forKey: .x)
        // Its keys have no "super": a missing member, not a crash.
        #expect(throws: DecodingError.self) { try container.superDecoder() }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(0, forKey: .value)
        var inner = container.nestedContainer(keyedBy: Inner.self, forKey: .nested)
        try inner.encode(value, forKey: .x)
        try container.encode(value, forKey: .value)
    }
}

@Suite struct JSONCodingTests {
    @Test func readsWhatTheAPIServerWritesIgnoringUnknownMembers() throws {
        let document = #"""
            {"kind":"Pki","extra":{"deep":[1,{"x":null}]},"metadata":{"name":"app1","labels":{"a":"1","b":"\u00e9"},
             "generation":9007199254740993},"replicas":3.0,"ratio":0.25,"ready":true,"tags":["x","y"],"nested":[[1,2],[]]}
            """#
        let object = try JSONCoding.decode(Object.self, from: Array(document.utf8))
        #expect(object == Object(kind: "Pki", metadata: .init(name: "app1", labels: ["a": "1", "b": "é"], generation: 9_007_199_254_740_993),
                                 replicas: 3, ratio: 0.25, ready: true, tags: ["x", "y"], nested: [[1, 2], []]),
                "an Int64 beyond a Double's precision is read exactly; 3.0 is the integer 3")
    }

    @Test func nullOrMissingIsNilForAnOptionalAndAnErrorOtherwise() throws {
        let withNulls = try JSONCoding.decode(Object.self, from: Array(#"{"kind":"K","metadata":{"name":"n","labels":null},"replicas":null,"ready":false,"tags":[]}"#.utf8))
        #expect(withNulls.metadata.labels == nil && withNulls.replicas == nil && withNulls.nested == nil)

        #expect {
            try JSONCoding.decode(Object.self, from: Array(#"{"metadata":{"name":"n"},"ready":false,"tags":[]}"#.utf8))
        } throws: { error in
            guard case DecodingError.keyNotFound(let key, _) = error else { return false }
            return key.stringValue == "kind"
        }
        #expect {
            try JSONCoding.decode(Object.self, from: Array(#"{"kind":null,"metadata":{"name":"n"},"ready":false,"tags":[]}"#.utf8))
        } throws: { error in
            guard case DecodingError.valueNotFound = error else { return false }
            return true
        }
        #expect {
            try JSONCoding.decode(Object.self, from: Array(#"{"kind":"K","metadata":{"name":"n"},"replicas":1.5,"ready":false,"tags":[]}"#.utf8))
        } throws: { error in
            guard case DecodingError.dataCorrupted(let context) = error else { return false }
            return context.debugDescription == "number 1.5 does not fit in Int" && context.codingPath.map(\.stringValue) == ["replicas"]
        }
        #expect {
            try JSONCoding.decode(Object.self, from: Array(#"{"kind":"K","metadata":{"name":"n"},"ready":"yes","tags":[]}"#.utf8))
        } throws: { error in
            guard case DecodingError.typeMismatch(_, let context) = error else { return false }
            return context.debugDescription == "expected Bool, found a string"
        }
        #expect(throws: JSONError.self) { try JSONCoding.decode(Object.self, from: Array(#"{"kind":"K",}"#.utf8)) }
    }

    @Test func writesMembersInOrderWithoutNilOptionalsAndReadsItsOwnOutput() throws {
        let object = Object(kind: "Secret \"x\"", metadata: .init(name: "n", labels: ["k": "v"], generation: nil),
                            replicas: nil, ratio: 20, ready: true, tags: [], nested: [[-1]])
        let bytes = try JSONCoding.encode(object)
        #expect(String(decoding: bytes, as: UTF8.self)
                == #"{"kind":"Secret \"x\"","metadata":{"name":"n","labels":{"k":"v"}},"ratio":20,"ready":true,"tags":[],"nested":[[-1]]}"#)
        #expect(try JSONCoding.decode(Object.self, from: bytes) == object)
        #expect(throws: EncodingError.self) { try JSONCoding.encode(Double.nan) }
    }

    @Test func nestedContainersFillInPlaceAndAMemberWrittenTwiceKeepsItsLastValue() throws {
        let bytes = try JSONCoding.encode(Handwritten(value: 7))
        #expect(String(decoding: bytes, as: UTF8.self) == #"{"value":7,"nested":{"x":7}}"#)
        #expect(try JSONCoding.decode(Handwritten.self, from: bytes) == Handwritten(value: 7))
    }

    @Test func base64IsPaddedStandardBase64BothWays() {
        for (bytes, text) in [([], ""), ([0x66], "Zg=="), ([0x66, 0x6f], "Zm8="), ([0x66, 0x6f, 0x6f], "Zm9v"),
                              ([0xfb, 0xff, 0xbf], "+/+/")] as [([UInt8], String)] {
            #expect(Base64.encode(bytes) == text)
            #expect(Base64.decode(text) == bytes)
        }
        for invalid in ["Zg", "Zg=", "Z===", "Zg==Zg==", "Zm9v!A==", "Zm=v"] {
            #expect(Base64.decode(invalid) == nil, "\(invalid) is not padded standard base64")
        }
    }
}
