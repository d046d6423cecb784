import CertgateSystem
import ArgumentParser
import CertgateLocking
import CertgateJSON
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
            var line = JSONWriter()
            line.object { object in
                object.member("ts", string: time)
                object.member("level", string: event.level.rawValue)
                object.member("logger", string: label)
                object.member("msg", string: "\(event.message)")
                for key in merged.keys.sorted() { object.member(key, string: "\(merged[key]!)") }
            }
            LogSink.standardError.write(String(decoding: line.bytes, as: UTF8.self))
        }
    }
}

private func timestamp() -> String { utcTimestampNow(fractionDigits: 3) }

/// A value as logfmt writes it: bare, or quoted and escaped as a JSON string when it has a
/// space, a quote or an equals sign, or is empty.
private func quoteIfNeeded(_ value: String) -> String {
    guard value.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" }) || value.isEmpty else { return value }
    var quoted = JSONWriter(capacity: value.utf8.count + 2)
    quoted.string(value)
    return String(decoding: quoted.bytes, as: UTF8.self)
}

private extension String {
    func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}
