import ArgumentParser
import CertgatePKI
import Logging

/// A duration flag, written as Go and Kubernetes components write them ("10s", "1m30s",
/// "500ms"); help shows the default as it was written.
struct GoDuration: ExpressibleByArgument, CustomStringConvertible, Sendable {
    let seconds: Double
    let description: String

    init?(argument: String) {
        guard let seconds = parseGoDuration(argument) else { return nil }
        self.seconds = seconds
        description = argument
    }

    /// A duration written in the source as a default ("10s").
    init(_ literal: StaticString) {
        self.init(argument: "\(literal)")!
    }
}

/// `--log-level` reads swift-log's level names; completion offers them all.
extension Logger.Level: @retroactive ExpressibleByArgument {}
