#if canImport(Glibc)
import Glibc
#endif

/// A line to standard error, written at once.
public func printError(_ line: String) { writeAll(line + "\n", to: 2) }

/// A line to standard output, written at once: a command's findings and its summary on
/// stderr keep their order when both go to one pipe (print's buffer let the summary
/// overtake them).
public func printOutput(_ line: String) { writeAll(line + "\n", to: 1) }

func writeAll(_ text: String, to descriptor: Int32) {
    let bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
        let written = bytes[offset...].withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        if written < 0 && errno == EINTR { continue }
        guard written > 0 else { return }
        offset += written
    }
}
