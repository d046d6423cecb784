import CertgateFuzzing
import Foundation
import Testing

/// The repository, found from this file's path.
private let fuzzDirectory = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fuzz").path

private func inputs(_ kind: String, _ target: FuzzTarget) throws -> [String] {
    let directory = "\(fuzzDirectory)/\(kind)/\(target.rawValue)"
    guard FileManager.default.fileExists(atPath: directory) else { return [] }
    return try FileManager.default.contentsOfDirectory(atPath: directory).sorted().map { "\(directory)/\($0)" }
}

/// Every seed of every fuzz target, and every input a fuzzer once crashed on, through the
/// same functions libFuzzer calls: a finding fixed once stays fixed in the ordinary suite.
@Suite struct FuzzReplayTests {
    @Test(arguments: FuzzTarget.allCases)
    func everySeedAndPastFindingRunsCleanly(_ target: FuzzTarget) throws {
        let seeds = try inputs("corpus", target)
        #expect(!seeds.isEmpty, "Fuzz/corpus/\(target.rawValue) has no seed inputs")
        for file in seeds + (try inputs("regressions", target)) {
            let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: file)))
            bytes.withUnsafeBytes { target.run($0) }
        }
    }
}
