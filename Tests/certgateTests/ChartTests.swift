import CertgateTestSupport
import Foundation
import Testing

/// The Helm chart's tests (Tests/Chart/test_chart.py) run with the Python packages that
/// scripts/setup installs in .venv-test, and with this build's certgate binary to load the
/// policy the chart renders.
@Suite struct ChartTests {
    @Test func theChartLintsRendersAndChecksForTheREADMEsInstallCommands() throws {
        let python = repositoryRoot + "/.venv-test/bin/python"
        try #require(FileManager.default.isExecutableFile(atPath: python),
                     "\(python) is missing: run scripts/setup (it installs helm-python-sdk and kubernetes-validate)")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["CERTGATE_BINARY=\(certgateBinary)", python, "-m", "unittest", "discover", "-s", repositoryRoot + "/Tests/Chart", "-v"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "\(text)")
        #expect(text.contains("\nOK"), "\(text)")
    }
}
