// libFuzzer's entry points. Built with scripts/fuzz (swift build --sanitize=fuzzer,address),
// libFuzzer supplies main; built normally, this program does nothing.
import CertgateFuzzing
#if canImport(Glibc)
import Glibc
#endif

/// Which target runs, from CERTGATE_FUZZ_TARGET (scripts/fuzz sets it).
nonisolated(unsafe) private var selectedTarget: FuzzTarget?

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> CInt {
    let names = FuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")
    guard let name = getenv("CERTGATE_FUZZ_TARGET").map({ String(cString: $0) }) else {
        fatalError("set CERTGATE_FUZZ_TARGET to one of: \(names)")
    }
    guard let target = FuzzTarget(rawValue: name) else {
        fatalError("CERTGATE_FUZZ_TARGET=\(name) is not one of: \(names)")
    }
    selectedTarget = target
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func testOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    selectedTarget?.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
