import ArgumentParser
import CertgateLocking
import CertgateHTTP
import CertgateNet
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// How log lines are written to standard error.
enum LogFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json
}

/// Writes whole lines to standard error under one lock, so lines from event-loop threads
/// never interleave.
final class LogSink: Sendable {
    static let standardError = LogSink()
    private let lock = Locked<Void>(())

    func write(_ line: String) {
        lock.withLock { _ in printError(line) }
    }
}

/// A swift-log handler for both formats: `text` for people, `json` (one object per line,
/// like klog's JSON format) for log pipelines.
struct CertgateLogHandler: LogHandler {
    let label: String
    let format: LogFormat
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]

    init(label: String, format: LogFormat, level: Logger.Level) {
        self.label = label
        self.format = format
        self.logLevel = level
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        let time = timestamp()
        switch format {
        case .text:
            var line = "\(time) \(event.level.rawValue.uppercased().padding(7)) \(event.message)"
            for key in merged.keys.sorted() { line += " \(key)=\(quoteIfNeeded("\(merged[key]!)"))" }
            LogSink.standardError.write(line)
        case .json:
            var line = "{\"ts\":\"\(time)\",\"level\":\"\(event.level.rawValue)\",\"logger\":\"\(jsonEscape(label))\",\"msg\":\"\(jsonEscape("\(event.message)"))\""
            for key in merged.keys.sorted() { line += ",\"\(jsonEscape(key))\":\"\(jsonEscape("\(merged[key]!)"))\"" }
            line += "}"
            LogSink.standardError.write(line)
        }
    }
}

private func timestamp() -> String { utcTimestampNow(fractionDigits: 3) }

private func quoteIfNeeded(_ value: String) -> String {
    value.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" }) || value.isEmpty ? "\"\(jsonEscape(value))\"" : value
}

private extension String {
    func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}
