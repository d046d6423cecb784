/// The parsers of untrusted input, each as a function from bytes to nothing that traps
/// (through `fuzzCheck`, an out-of-range index, an overflow, or AddressSanitizer) when the
/// parser misbehaves. libFuzzer drives them in `certgate-fuzz`; the ordinary test suite
/// replays every committed corpus file and every past finding through the same functions.
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// The HTTP/1.1 request parser with the chunked decoder, fed in pieces.
    case http1Request = "http1-request"
    /// The HTTP/1.1 response parser the Kubernetes client reads the API server with.
    case http1Response = "http1-response"
    /// A whole HTTP/1.1 connection of the webhook server, without TLS.
    case http1Connection = "http1-connection"
    /// A whole HTTP/2 connection of the webhook server fed raw frames after the preface.
    case http2Connection = "http2-connection"
    /// The JSON pull reader, walking every value.
    case json
    /// POST /validate: an AdmissionReview in, an AdmissionReview out, through the rules.
    case admission
    /// The policy file (YAML), then the rules under the policy it gives.
    case policy
    /// A kubeconfig file (YAML, base64 certificate data).
    case kubeconfig
    /// API server bodies: list envelopes, watch streams and Status.
    case kubeWire = "kube-wire"
    /// PEM certificates and private keys.
    case pem

    /// Runs one input.
    public func run(_ input: UnsafeRawBufferPointer) {
        let bytes = Array(input)
        switch self {
        case .http1Request: fuzzHTTP1Request(bytes)
        case .http1Response: fuzzHTTP1Response(bytes)
        case .http1Connection: fuzzConnection(bytes, http2: false)
        case .http2Connection: fuzzConnection(bytes, http2: true)
        case .json: fuzzJSON(bytes)
        case .admission: fuzzAdmission(bytes)
        case .policy: fuzzPolicy(bytes)
        case .kubeconfig: fuzzKubeconfig(bytes)
        case .kubeWire: fuzzKubeWire(bytes)
        case .pem: fuzzPEM(bytes)
        }
    }
}

/// A property every input must keep; a failure is a finding, reported with what broke.
func fuzzCheck(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
               file: StaticString = #fileID, line: UInt = #line) {
    if !condition() { fatalError("fuzz property violated: \(message())", file: file, line: line) }
}

/// Cuts `bytes` into pieces at places chosen by `seed`, as a network would deliver them.
func pieces(of bytes: ArraySlice<UInt8>, seed: UInt8) -> [ArraySlice<UInt8>] {
    guard seed != 0, !bytes.isEmpty else { return [bytes] }
    var result: [ArraySlice<UInt8>] = []
    var start = bytes.startIndex
    var state = UInt32(seed)
    while start < bytes.endIndex {
        state = state &* 1_103_515_245 &+ 12_345
        let length = 1 + Int((state >> 16) % 64)
        let end = min(bytes.endIndex, start + length)
        result.append(bytes[start..<end])
        start = end
    }
    return result
}
